"""``sandbar`` command line: ``sandbar up`` runs the whole stack locally."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from pydantic import Field

from bridge.keys import ensure_stack_keys
from sandbar import metrics
from sandbar.config import ConfigError, StrictModel, validate_config
from sandbar.health import bridge_ready, http_ready, router_ready, topics_ready
from sandbar.logs import log_format, setup_logging
from sandbar.paths import ROOT, RUN_DIR
from sandbar.router import MAX_PROXIES, PROXIES_VAR
from sandbar.router_proxies import socket_path
from sandbar.secrets import DEV_VAR, ensure_backend_secret
from sandbar.supervisor import Service, Supervisor
from sandbar.wamp import RouterConnection
from topics.registry import APP_VAR, app_spec, load_app

log = logging.getLogger("sandbar.up")


class UpConfig(StrictModel):
    """The local development stack: everything on loopback, SQLite, dev secret allowed."""

    host: str = "127.0.0.1"
    router_port: int = 8080
    backend_port: int = 8081
    api_port: int = 5000
    bridge_port: int = 5555
    #: /metrics of the bridge there, of topics, the api and the router on the next ports
    #: (taken: other free ones); 0: off
    metrics_port: int = Field(9470, ge=0, le=65532)
    api_workers: int = Field(2, gt=0)
    run_dir: Path = RUN_DIR
    bridge_config: Path = ROOT / "config" / "bridge.yaml"
    ready_timeout: float = Field(60.0, gt=0)
    #: the TopicRouter the topics service serves and the API's GET /events and the bridge check
    topics_app: str = Field(default_factory=app_spec)
    #: the API's app factory (module:function), yours or the kit's
    api_app: str = Field(
        default_factory=lambda: os.environ.get("SANDBAR_API_APP", "api.app:create_app")
    )
    #: a service whose health check fails this long is restarted
    unhealthy_after: float = Field(30.0, gt=0)
    #: empty: SANDBAR_API_DATABASE_URL when set, else SQLite in run_dir
    database_url: str = ""
    #: Crossbar proxy workers in front of the router worker (README "Proxy workers")
    proxies: int = Field(0, ge=0, le=MAX_PROXIES)

    @property
    def backend_url(self) -> str:
        return f"rs://{self.host}:{self.backend_port}"

    @property
    def demo_url(self) -> str:
        """The demo page; it assumes the API on port 5000 unless told with ``?api=``."""
        return self.page_url("/")

    def page_url(self, path: str) -> str:
        """A page the router serves, told where the API is unless it is on port 5000."""
        url = f"http://{self.host}:{self.router_port}{path}"
        return url if self.api_port == 5000 else f"{url}?api=http://{self.host}:{self.api_port}"

    def metrics_urls(self) -> dict[str, str]:
        ports = {
            "bridge": self.metrics_port,
            "topics": self.metrics_port + 1,
            "api": self.metrics_port + 2,
            "router": self.metrics_port + 3,
        }
        return {name: f"http://{self.host}:{port}/metrics" for name, port in ports.items()}

    def cors_origins(self) -> str:
        """The demo page's origins, which the API must allow (unless set explicitly)."""
        default = f"http://{self.host}:{self.router_port},http://localhost:{self.router_port}"
        return os.environ.get("SANDBAR_API_CORS_ORIGINS", default)

    def env(self) -> dict[str, str]:
        """What each service reads; one place keeps the ports consistent."""
        return {
            "SANDBAR_ROUTER_HOST": self.host,
            "SANDBAR_ROUTER_PORT": str(self.router_port),
            "SANDBAR_BACKEND_HOST": self.host,
            "SANDBAR_BACKEND_PORT": str(self.backend_port),
            "SANDBAR_ROUTER_RUN_DIR": str(self.run_dir / "router"),
            PROXIES_VAR: str(self.proxies),
            "SANDBAR_ROUTER_BACKEND_URL": self.backend_url,
            "SANDBAR_BRIDGE_BIND": f"tcp://{self.host}:{self.bridge_port}",
            "SANDBAR_API_HOST": self.host,
            "SANDBAR_API_PORT": str(self.api_port),
            "SANDBAR_API_WORKERS": str(self.api_workers),
            "SANDBAR_API_BRIDGE_ENDPOINT": f"tcp://{self.host}:{self.bridge_port}",
            "SANDBAR_API_DATABASE_URL": self.database_url
            or os.environ.get("SANDBAR_API_DATABASE_URL")
            or f"sqlite:///{self.run_dir / 'api.db'}",
            "SANDBAR_TOPICS_API_URL": f"http://{self.host}:{self.api_port}",
            "SANDBAR_API_CORS_ORIGINS": self.cors_origins(),
            # CURVE key files made by up() (bridge/keys.py): the bridge admits only the API's key
            "SANDBAR_BRIDGE_CURVE_KEYS": str(self.run_dir / "curve" / "bridge.keys"),
            "SANDBAR_API_BRIDGE_KEYS": str(self.run_dir / "curve" / "api.keys"),
            APP_VAR: self.topics_app,
            "SANDBAR_API_APP": self.api_app,
            "SANDBAR_API_ROUTES_CONFIG": str(self.bridge_config),  # the API numbers events by it
            metrics.HOST_VAR: self.host,
            metrics.port_var("bridge"): str(self.metrics_port),
            metrics.port_var("topics"): str(self.metrics_port and self.metrics_port + 1),
            metrics.port_var("api"): str(self.metrics_port and self.metrics_port + 2),
            metrics.port_var("router"): str(self.metrics_port and self.metrics_port + 3),
            # the api workers' metric files: its master empties the directory at start
            "SANDBAR_API_METRICS_DIR": str(self.run_dir / "api-metrics"),
        }


def build_services(config: UpConfig, secret: str) -> list[Service]:
    bin_dir = Path(sys.executable).parent
    backend = RouterConnection(url=config.backend_url, authid="topics", ticket=secret)
    router_url = f"http://{config.host}:{config.router_port}/"
    api_url = f"http://{config.host}:{config.api_port}/healthz"
    env = config.env()
    return [
        Service("router", [str(bin_dir / "sandbar-router")], env, lambda: http_ready(router_url)),
        Service("topics", [str(bin_dir / "sandbar-topics")], env, lambda: topics_ready(backend)),
        Service(
            "bridge",
            [str(bin_dir / "sandbar-bridge"), str(config.bridge_config)],
            env,
            lambda: bridge_ready(backend),
        ),
        Service("api", [str(bin_dir / "sandbar-api")], env, lambda: http_ready(api_url)),
    ]


DEMO_USER, DEMO_PASSWORD = "demo", "sandbar-demo"


def _ensure_demo_user(config: UpConfig) -> bool:
    """Development only: an account to try signed-in features with."""
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("sandbar-api")),
            "users",
            "add",
            DEMO_USER,
            "--password-stdin",
        ],
        input=DEMO_PASSWORD + "\n",
        env={**os.environ, **config.env()},
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.returncode == 0 or "taken" in result.stderr


def up(config: UpConfig) -> int:
    """Run the stack until Ctrl-C/SIGTERM; returns the exit code."""
    if config.proxies:
        socket_path(config.run_dir / "router")  # too long a path fails here, not in a restart loop
    os.environ.setdefault(DEV_VAR, "1")
    os.environ.setdefault("SANDBAR_ROUTER_LOG_LEVEL", "warn")  # crossbar's info is per-session
    secret = ensure_backend_secret()
    ensure_stack_keys(config.run_dir / "curve")
    load_app(config.topics_app)  # a wrong module:attribute fails here, once, not in each service
    if config.metrics_port:
        base = metrics.adjacent_ports(config.host, config.metrics_port, len(config.metrics_urls()))
        config = config.model_copy(update={"metrics_port": base})
    supervisor = Supervisor(build_services(config, secret), unhealthy_after=config.unhealthy_after)

    def announce() -> None:
        demo = _ensure_demo_user(config)
        urls = {
            "demo page": config.demo_url,
            "inspector": f"{config.page_url('/inspect/')}  (staff accounts only: README, The inspector)",
            "websocket": f"ws://{config.host}:{config.router_port}/ws  (realm sandbar)",
            "api": f"http://{config.host}:{config.api_port}/articles",
            "bridge": f"tcp://{config.host}:{config.bridge_port}",
            "keys": f"{config.run_dir / 'curve' / 'api.keys'}  (EventSender(keys=...))",
            "sign in": f"{DEMO_USER} / {DEMO_PASSWORD}" if demo else "(demo user unavailable)",
            "metrics": "  ".join(f"{url} ({name})" for name, url in config.metrics_urls().items())
            if config.metrics_port
            else "(off: --metrics-port 0)",
        }
        if log_format() == "json":  # one object a line, this one too
            log.info("Sandbar is ready: %s", json.dumps(urls))
        else:
            lines = "\n".join(f"  {name:<10} {url}" for name, url in urls.items())
            print(f"\nSandbar is ready:\n{lines}\n", flush=True)
        log.info(
            "ready %s", json.dumps({"router_port": config.router_port, "api_port": config.api_port})
        )

    return supervisor.serve(ready_timeout=config.ready_timeout, on_ready=announce)


def health(service: str, url: str | None) -> int:
    """Check one service once; print why it is not ready."""
    env = os.environ
    if service in ("router", "api") and not (url or "").startswith("rs://"):
        default = (
            "http://127.0.0.1:8080/" if service == "router" else "http://127.0.0.1:5000/healthz"
        )
        check = http_ready(url or default)
    else:
        backend = RouterConnection(
            url=url or env.get("SANDBAR_ROUTER_BACKEND_URL", "rs://127.0.0.1:8081"),
            authid="topics",
            ticket=ensure_backend_secret(),
        )
        checks = {"topics": topics_ready, "bridge": bridge_ready, "router": router_ready}
        check = checks[service](backend)
    try:
        ok = asyncio.run(asyncio.wait_for(check, 5))
    except Exception as exc:
        print(f"{service}: not ready ({exc or type(exc).__name__})", file=sys.stderr)
        return 1
    print(f"{service}: {'ready' if ok else 'not ready'}")
    return 0 if ok else 1


def write_asyncapi(args: argparse.Namespace) -> int:
    from sandbar.asyncapi import generate

    document = generate(args.bridge_config, args.topics_app, router=args.router)
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        print(
            f"{args.output}: AsyncAPI {document['asyncapi']}, {len(document['channels'])} channels"
        )
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sandbar", description="Sandbar command line")
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("up", help="run router, topics, bridge and api locally")
    defaults = UpConfig()
    for name in (
        "host",
        "router_port",
        "backend_port",
        "api_port",
        "bridge_port",
        "metrics_port",
        "api_workers",
        "run_dir",
        "bridge_config",
        "ready_timeout",
        "topics_app",
        "api_app",
        "unhealthy_after",
        "database_url",
        "proxies",
    ):
        default = getattr(defaults, name)
        if name == "proxies":  # argparse's type=int names --proxies in its error
            default = os.environ.get(PROXIES_VAR, str(default))
        run_parser.add_argument(
            f"--{name.replace('_', '-')}",
            default=default,
            type=type(getattr(defaults, name)),
            help=f"(default: {default})",
        )
    keys_parser = commands.add_parser(
        "curve-keys", help="print a new ZeroMQ CURVE key pair (public, secret)"
    )
    keys_parser.add_argument(
        "--init",
        metavar="DIR",
        type=Path,
        help="instead, write DIR/bridge.keys and DIR/api.keys (mode 0600) unless both exist",
    )
    node_keys_parser = commands.add_parser(
        "node-keys",
        help="make edge nodes' Crossbar keys (kept if present) and the core's trusted copies",
    )
    node_keys_parser.add_argument(
        "folder", type=Path, help="writes FOLDER/<node id>/key.* and FOLDER/trusted/<id>.pub"
    )
    node_keys_parser.add_argument("node_ids", nargs="+", metavar="NODE_ID")
    routes_parser = commands.add_parser("routes", help="list the bridge routes: event → topic")
    routes_parser.add_argument("--bridge-config", type=Path, default=defaults.bridge_config)
    topics_parser = commands.add_parser("topics", help="list the declared topics and their hooks")
    topics_parser.add_argument("--topics-app", default=defaults.topics_app)
    asyncapi_parser = commands.add_parser(
        "asyncapi", help="write the AsyncAPI 3.0 document of the topics, routes and schemas"
    )
    asyncapi_parser.add_argument("--bridge-config", type=Path, default=defaults.bridge_config)
    asyncapi_parser.add_argument("--topics-app", default=defaults.topics_app)
    asyncapi_parser.add_argument(
        "--router", default="127.0.0.1:8080", help="the router's host:port browsers use"
    )
    asyncapi_parser.add_argument(
        "-o", "--output", type=Path, help="write it to this file (default: standard output)"
    )
    health_parser = commands.add_parser(
        "health", help="exit 0 if a service is ready (for container healthchecks)"
    )
    health_parser.add_argument("service", choices=["router", "topics", "bridge", "api"])
    health_parser.add_argument(
        "--url", help="router http URL, API /healthz URL, or backend rs:// URL"
    )
    args = parser.parse_args(argv)
    setup_logging(service="up")
    try:
        if args.command == "curve-keys":
            from bridge.curve import new_keypair

            if args.init is not None:
                ensure_stack_keys(args.init)
                raise SystemExit(0)
            public, secret = new_keypair()
            print(f"public: {public}\nsecret: {secret}")
            raise SystemExit(0)
        if args.command == "node-keys":
            from sandbar.node_keys import make_node_keys

            for node_id, key in make_node_keys(args.folder, args.node_ids).items():
                print(f"{node_id}: {key}")
            raise SystemExit(0)
        if args.command == "health":
            raise SystemExit(health(args.service, args.url))
        if args.command == "asyncapi":
            raise SystemExit(write_asyncapi(args))
        if args.command in ("routes", "topics"):
            from sandbar import listing

            print(
                listing.routes_table(args.bridge_config)
                if args.command == "routes"
                else listing.topics_listing(args.topics_app)
            )
            raise SystemExit(0)
        settings = {k: v for k, v in vars(args).items() if k != "command"}
        config = validate_config(UpConfig, settings, source="sandbar up")
        raise SystemExit(up(config))
    except ConfigError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
