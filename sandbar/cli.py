"""``sandbar`` command line: ``sandbar up`` runs the whole stack locally."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import urllib.request
from pathlib import Path

from pydantic import Field

from sandbar.config import ConfigError, StrictModel
from sandbar.logs import setup_logging
from sandbar.paths import ROOT, RUN_DIR
from sandbar.probe import call_backend
from sandbar.secrets import DEV_VAR, ensure_backend_secret
from sandbar.service import run_until_signalled
from sandbar.supervisor import Service, Supervisor
from sandbar.wamp import RouterConnection

log = logging.getLogger("sandbar.up")


class UpConfig(StrictModel):
    """The local development stack: everything on loopback, SQLite, dev secret allowed."""

    host: str = "127.0.0.1"
    router_port: int = 8080
    backend_port: int = 8081
    api_port: int = 5000
    bridge_port: int = 5555
    api_workers: int = Field(2, gt=0)
    run_dir: Path = RUN_DIR
    bridge_config: Path = ROOT / "config" / "bridge.yaml"
    ready_timeout: float = Field(60.0, gt=0)

    @property
    def backend_url(self) -> str:
        return f"rs://{self.host}:{self.backend_port}"

    def env(self) -> dict[str, str]:
        """What each service reads; one place keeps the ports consistent."""
        return {
            "SANDBAR_ROUTER_HOST": self.host,
            "SANDBAR_ROUTER_PORT": str(self.router_port),
            "SANDBAR_BACKEND_HOST": self.host,
            "SANDBAR_BACKEND_PORT": str(self.backend_port),
            "SANDBAR_ROUTER_RUN_DIR": str(self.run_dir / "router"),
            "SANDBAR_ROUTER_BACKEND_URL": self.backend_url,
            "SANDBAR_BRIDGE_BIND": f"tcp://{self.host}:{self.bridge_port}",
            "SANDBAR_API_HOST": self.host,
            "SANDBAR_API_PORT": str(self.api_port),
            "SANDBAR_API_WORKERS": str(self.api_workers),
            "SANDBAR_API_BRIDGE_ENDPOINT": f"tcp://{self.host}:{self.bridge_port}",
            "SANDBAR_API_DATABASE_URL": f"sqlite:///{self.run_dir / 'api.db'}",
        }


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


def build_services(config: UpConfig, secret: str) -> list[Service]:
    bin_dir = Path(sys.executable).parent
    backend = RouterConnection(url=config.backend_url, authid="topics", ticket=secret)
    env = config.env()

    async def router_ready() -> bool:
        return await asyncio.to_thread(_http_ok, f"http://{config.host}:{config.router_port}/")

    async def topics_ready() -> bool:
        return bool(await call_backend(backend, "sandbar.topics.list", timeout=2))

    async def bridge_ready() -> bool:
        stats = await call_backend(backend, "sandbar.bridge.stats", timeout=2)
        return bool(stats["connected"])

    async def api_ready() -> bool:
        return await asyncio.to_thread(_http_ok, f"http://{config.host}:{config.api_port}/healthz")

    return [
        Service("router", [str(bin_dir / "sandbar-router")], env, router_ready),
        Service("topics", [str(bin_dir / "sandbar-topics")], env, topics_ready),
        Service(
            "bridge",
            [str(bin_dir / "sandbar-bridge"), str(config.bridge_config)],
            env,
            bridge_ready,
        ),
        Service("api", [str(bin_dir / "sandbar-api")], env, api_ready),
    ]


def up(config: UpConfig) -> int:
    """Run the stack until Ctrl-C/SIGTERM; returns the exit code."""
    os.environ.setdefault(DEV_VAR, "1")
    os.environ.setdefault("SANDBAR_ROUTER_LOG_LEVEL", "warn")  # crossbar's info is per-session
    secret = ensure_backend_secret()
    supervisor = Supervisor(build_services(config, secret))
    exit_code = 0

    def announce() -> None:
        urls = {
            "demo page": f"http://{config.host}:{config.router_port}/",
            "websocket": f"ws://{config.host}:{config.router_port}/ws  (realm sandbar)",
            "api": f"http://{config.host}:{config.api_port}/articles",
            "bridge": f"tcp://{config.host}:{config.bridge_port}",
        }
        lines = "\n".join(f"  {name:<10} {url}" for name, url in urls.items())
        print(f"\nSandbar is ready:\n{lines}\n", flush=True)
        log.info(
            "ready %s", json.dumps({"router_port": config.router_port, "api_port": config.api_port})
        )

    async def main(stop: asyncio.Event) -> None:
        nonlocal exit_code
        exit_code = await supervisor.run(
            stop, ready_timeout=config.ready_timeout, on_ready=announce
        )

    run_until_signalled(main)
    return exit_code


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
        "api_workers",
        "run_dir",
        "bridge_config",
        "ready_timeout",
    ):
        default = getattr(defaults, name)
        run_parser.add_argument(
            f"--{name.replace('_', '-')}",
            default=default,
            type=type(default),
            help=f"(default: {default})",
        )
    args = parser.parse_args(argv)
    setup_logging()
    try:
        config = UpConfig(**{k: v for k, v in vars(args).items() if k != "command"})
        raise SystemExit(up(config))
    except ConfigError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
