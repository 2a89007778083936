"""Start the Crossbar router from the template in ``.crossbar/config.yaml``.

Crossbar substitutes ``${VAR}`` only in secrets, so host, ports and paths are
rendered into a private copy first; then this process *becomes* Crossbar
(``exec``), so SIGTERM reaches the router's controller directly and it shuts
its workers down itself.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import yaml
from pydantic import Field, field_validator, model_validator

from sandbar import metrics
from sandbar.config import ConfigError, StrictModel, expand_env, validate_config
from sandbar.logs import setup_logging
from sandbar.metrics import MetricsSettings
from sandbar.nesting import DEFAULT_MAX_DEPTH
from sandbar.node_keys import check_node_id, require_node_key, trusted_keys
from sandbar.paths import ROUTER_TEMPLATE, RUN_DIR, WEB_DIR, private_dir
from sandbar.router_idle import DEFAULT_SESSIONLESS_TIMEOUT, SessionlessTimeout
from sandbar.router_proxies import as_core, as_edge, socket_path, with_proxies
from sandbar.secrets import ensure_backend_secret

log = logging.getLogger("sandbar.router")


DEFAULT_ORIGINS = ("http://127.0.0.1:*", "http://localhost:*")
#: more proxy workers than this is a typo, not a plan (each is a process of ~60 MB)
MAX_PROXIES = 64
PROXIES_VAR = "SANDBAR_ROUTER_PROXIES"
SESSIONLESS_VAR = "SANDBAR_SESSIONLESS_TIMEOUT"


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


class RouterConfig(StrictModel):
    """Where the router listens and what it serves."""

    host: str = "127.0.0.1"
    port: int = 8080
    backend_host: str = "127.0.0.1"
    backend_port: int = 8081
    web_dir: Path = WEB_DIR
    template: Path = ROUTER_TEMPLATE
    run_dir: Path = RUN_DIR / "router"
    #: largest WAMP message from a backend (rawsocket transport)
    max_message_size: int = Field(1024 * 1024, ge=1024)
    #: largest WAMP message from a browser (WebSocket transport)
    browser_max_message_size: int = Field(256 * 1024, ge=1024)
    #: deepest nesting of arrays/objects in any WAMP message the router decodes
    max_nesting: int = Field(DEFAULT_MAX_DEPTH, ge=8, le=500)
    #: seconds a browser connection may stay open without a WAMP session (before HELLO,
    #: after GOODBYE); 0: forever. Checked again, with the reason, by the RouterGuard
    sessionless_timeout: SessionlessTimeout = DEFAULT_SESSIONLESS_TIMEOUT
    #: browser origins allowed to open WebSocket sessions (wildcards allowed)
    allowed_origins: tuple[str, ...] = DEFAULT_ORIGINS
    log_level: str = "info"
    #: the worker's /metrics (sandbar/router_metrics.py); port 0: off
    metrics: MetricsSettings = MetricsSettings()
    #: Crossbar proxy workers sharing the WebSocket port in front of the router worker
    #: (0: the router worker serves browsers itself); see sandbar/router_proxies.py
    proxies: int = Field(0, ge=0, le=MAX_PROXIES)
    #: single: one node for everything; core: the router worker alone, for edge nodes;
    #: edge: proxy workers only, in front of a core (README, Scaling, Edge nodes)
    mode: Literal["single", "core", "edge"] = "single"
    #: an edge's node id: its principal at the core (the name of its trusted key file)
    node_id: str | None = None
    #: where an edge's proxies reach the core's edge listener, rs://host:port
    core_url: str | None = None
    #: the core's listener for its edges' proxies, on backend_host
    edge_port: int = Field(8082, ge=1, le=65535)
    #: the core's folder of trusted edge keys, <node id>.pub (sandbar node-keys)
    trusted_keys: Path | None = None

    @field_validator("node_id")
    @classmethod
    def _plain_node_id(cls, value: str | None) -> str | None:
        return value if value is None else check_node_id(value)

    @field_validator("core_url")
    @classmethod
    def _rawsocket_url(cls, value: str | None) -> str | None:
        if value is not None:
            core_address(value)
        return value

    @model_validator(mode="after")
    def _mode_settings(self) -> RouterConfig:
        needs = {
            "edge": {"node_id": "--node-id", "core_url": "--core-url"},
            "core": {"trusted_keys": "--trusted-keys"},
        }.get(self.mode, {})
        for key, flag in needs.items():
            if getattr(self, key) is None:
                raise ValueError(f"mode {self.mode} needs {key} ({flag})")
        if self.mode == "edge" and self.proxies < 1:
            raise ValueError(
                "mode edge runs proxy workers only: set proxies (--proxies) to 1 or more"
            )
        if self.mode == "core" and self.proxies:
            raise ValueError("mode core serves no browsers: set proxies on its edges, not the core")
        return self

    def template_vars(self) -> dict[str, str]:
        return {
            "SANDBAR_ROUTER_HOST": self.host,
            "SANDBAR_ROUTER_PORT": str(self.port),
            "SANDBAR_BACKEND_HOST": self.backend_host,
            "SANDBAR_BACKEND_PORT": str(self.backend_port),
            "SANDBAR_WEB_DIR": str(self.web_dir.resolve()),
            "SANDBAR_MAX_MESSAGE_SIZE": str(self.max_message_size),
            "SANDBAR_BROWSER_MAX_MESSAGE_SIZE": str(self.browser_max_message_size),
            "SANDBAR_MAX_NESTING": str(self.max_nesting),
            SESSIONLESS_VAR: f"{self.sessionless_timeout:g}",
            "SANDBAR_ALLOWED_ORIGINS": json.dumps(list(self.allowed_origins)),
            metrics.HOST_VAR: self.metrics.host,
            metrics.port_var("router"): str(self.metrics.port),
        }


def render(config: RouterConfig) -> Path:
    """Write the filled-in config into ``run_dir`` and return that directory (the cbdir)."""
    try:
        template = config.template.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"{config.template}: cannot read router template ({exc.strerror})"
        ) from None
    text = expand_env(
        template, config.template_vars(), source=str(config.template), defaults_only=True
    )
    try:
        yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{config.template}: rendered config is not valid YAML: {exc}") from None
    if config.mode != "single" or config.proxies:
        text = _proxied(text, config)
    private_dir(config.run_dir)
    (config.run_dir / "config.yaml").write_text(text, encoding="utf-8")
    return config.run_dir


def _proxied(text: str, config: RouterConfig) -> str:
    """The rendered config with its browsers' transport moved to ``config.proxies`` proxy
    workers, which forward up to the larger of the two message limits."""
    largest = max(config.max_message_size, config.browser_max_message_size)
    doc = yaml.safe_load(text)
    if config.mode == "edge":
        assert config.node_id is not None and config.core_url is not None  # validated
        require_node_key(config.run_dir)
        host, port = core_address(config.core_url)
        doc = as_edge(doc, config.proxies, config.node_id, host, port)
    elif config.mode == "core":
        assert config.trusted_keys is not None  # validated
        trusted = trusted_keys(config.trusted_keys)
        doc = as_core(doc, trusted, config.backend_host, config.edge_port, largest)
    else:
        doc = with_proxies(doc, config.proxies, socket_path(config.run_dir), largest)
    return yaml.safe_dump(doc, sort_keys=False)


def core_address(url: str) -> tuple[str, int]:
    """``rs://host:port`` (the core's edge listener) as host and port."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "rs" or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ValueError(
            f"core_url {url!r}: write rs://<core host>:<edge port>, e.g. rs://router:8082"
        )
    return parts.hostname, port


def _describe(config: RouterConfig) -> str:
    browsers = f"ws://{config.host}:{config.port}/ws"
    backend = f"rs://{config.backend_host}:{config.backend_port}"
    if config.mode == "edge":
        return f"edge {config.node_id}: {config.proxies} proxy workers on {browsers} -> {config.core_url}"
    if config.mode == "core":
        edges = f"rs://{config.backend_host}:{config.edge_port}"
        return f"core router: backend {backend}, edges' proxies {edges}, no browsers here"
    return f"router on {browsers} (backend {backend}, {config.proxies} proxy workers)"


def crossbar_command(config: RouterConfig, cbdir: Path) -> list[str]:
    crossbar = Path(sys.executable).with_name("crossbar")
    return [str(crossbar), "start", "--cbdir", str(cbdir), "--loglevel", config.log_level]


def run(config: RouterConfig) -> None:
    """Render the config and replace this process with ``crossbar start``."""
    if config.mode != "edge":  # an edge holds no secret: the core checks tickets and proofs
        ensure_backend_secret()
    cbdir = render(config)
    stale_pid = cbdir / "node.pid"
    stale_pid.unlink(missing_ok=True)  # a killed router leaves it behind and blocks restarts
    log.info("%s", _describe(config))
    argv = crossbar_command(config, cbdir)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)


def config_from_args(argv: list[str] | None = None) -> RouterConfig:
    env = os.environ
    parser = argparse.ArgumentParser(prog="sandbar-router", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=env.get("SANDBAR_ROUTER_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env.get("SANDBAR_ROUTER_PORT", 8080)))
    parser.add_argument("--backend-host", default=env.get("SANDBAR_BACKEND_HOST", "127.0.0.1"))
    parser.add_argument(
        "--backend-port", type=int, default=int(env.get("SANDBAR_BACKEND_PORT", 8081))
    )
    parser.add_argument("--web-dir", type=Path, default=Path(env.get("SANDBAR_WEB_DIR", WEB_DIR)))
    parser.add_argument("--template", type=Path, default=ROUTER_TEMPLATE)
    parser.add_argument(
        "--run-dir", type=Path, default=Path(env.get("SANDBAR_ROUTER_RUN_DIR", RUN_DIR / "router"))
    )
    parser.add_argument("--log-level", default=env.get("SANDBAR_ROUTER_LOG_LEVEL", "info"))
    parser.add_argument(
        "--allowed-origins",
        type=_split,
        default=_split(env.get("SANDBAR_ALLOWED_ORIGINS", ",".join(DEFAULT_ORIGINS))),
        help="comma-separated browser origins allowed to connect, wildcards allowed, e.g. "
        "https://app.example.com (env SANDBAR_ALLOWED_ORIGINS)",
    )
    for flag, name, default in (
        ("--max-message-size", "SANDBAR_MAX_MESSAGE_SIZE", 1024 * 1024),
        ("--browser-max-message-size", "SANDBAR_BROWSER_MAX_MESSAGE_SIZE", 256 * 1024),
        ("--max-nesting", "SANDBAR_MAX_NESTING", DEFAULT_MAX_DEPTH),
        ("--proxies", PROXIES_VAR, 0),
    ):
        # a string default goes through type=int as well: a bad value gets argparse's message
        parser.add_argument(flag, type=int, default=env.get(name, str(default)), help=f"env {name}")
    parser.add_argument(
        "--sessionless-timeout",
        type=float,
        default=env.get(SESSIONLESS_VAR, f"{DEFAULT_SESSIONLESS_TIMEOUT:g}"),
        help="seconds a browser connection may stay open without a WAMP session, before "
        f"HELLO or after GOODBYE; 0: forever (env {SESSIONLESS_VAR})",
    )
    parser.add_argument(
        "--mode",
        default=env.get("SANDBAR_ROUTER_MODE", "single"),
        help="single, core (router for edge nodes) or edge (proxies only; env SANDBAR_ROUTER_MODE)",
    )
    parser.add_argument("--node-id", default=env.get("SANDBAR_NODE_ID"), help="env SANDBAR_NODE_ID")
    parser.add_argument(
        "--core-url", default=env.get("SANDBAR_CORE_URL"), help="env SANDBAR_CORE_URL"
    )
    parser.add_argument(
        "--edge-port",
        type=int,
        default=env.get("SANDBAR_EDGE_PORT", "8082"),
        help="env SANDBAR_EDGE_PORT",
    )
    parser.add_argument(
        "--trusted-keys",
        type=Path,
        default=env.get("SANDBAR_TRUSTED_KEYS"),
        help="env SANDBAR_TRUSTED_KEYS",
    )
    metrics.add_arguments(parser, "router")
    args = parser.parse_args(argv)
    served = metrics.settings_from(args, "router")
    fields = {k: v for k, v in vars(args).items() if not k.startswith("metrics_")}
    return validate_config(RouterConfig, {**fields, "metrics": served}, source="sandbar-router")


def main(argv: list[str] | None = None) -> None:
    setup_logging(service="router")
    try:
        run(config_from_args(argv))
    except ConfigError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
