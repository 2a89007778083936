"""Prometheus metrics for every Sandbar service: one registry each, served on ``/metrics``.

Names are ``sandbar_<service>_...`` in base units (seconds, bytes); latencies are
histograms, never summaries, so replicas aggregate. The endpoint is off unless a
port is given: replicas on one host would otherwise fight over a fixed port, and a
service should open no port nobody asked for. ``sandbar up`` turns it on.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from pydantic import Field

from sandbar.config import ConfigError, StrictModel

log = logging.getLogger("sandbar.metrics")

HOST_VAR = "SANDBAR_METRICS_HOST"
DEFAULT_HOST = "127.0.0.1"  # loopback: metrics say a lot about a deployment
#: seconds; from a fast loopback round trip to a slow authorizer hook or API call
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
#: seconds; an event's age also covers time spent buffered while the router was away
AGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class MetricsSettings(StrictModel):
    """Where a service serves ``/metrics``; port 0 means off."""

    host: str = DEFAULT_HOST
    port: int = Field(0, ge=0, le=65535)

    @property
    def url(self) -> str | None:
        return f"http://{self.host}:{self.port}/metrics" if self.port else None


def port_var(service: str) -> str:
    return f"SANDBAR_{service.upper()}_METRICS_PORT"


def _port(value: str) -> int:
    """``--metrics-port``: empty or 0 is off."""
    if value.strip() == "":
        return 0
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"'{value}' is not a port: give 1-65535, or 0 (or nothing) to serve no metrics"
        )
    return port


def add_arguments(parser: argparse.ArgumentParser, service: str) -> None:
    """``--metrics-port`` / ``--metrics-host``; unset, ``settings_from`` reads the variables."""
    parser.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        help=f"serve Prometheus metrics on this port (env {port_var(service)}; default: 0, off)",
    )
    parser.add_argument(
        "--metrics-host",
        default=None,
        help=f"address the metrics endpoint listens on (env {HOST_VAR}; default {DEFAULT_HOST})",
    )


def settings_from(
    args: argparse.Namespace,
    service: str,
    base: MetricsSettings | None = None,
    env: Mapping[str, str] | None = None,
) -> MetricsSettings:
    """The flags, else the environment, else ``base`` (e.g. the bridge YAML's section)."""
    env = os.environ if env is None else env
    base = base or MetricsSettings()
    port = args.metrics_port
    if port is None and env.get(port_var(service), "").strip():
        try:
            port = _port(env[port_var(service)])
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(f"{port_var(service)}: {exc}") from None
    host = args.metrics_host or env.get(HOST_VAR) or base.host
    return MetricsSettings(host=host, port=base.port if port is None else port)


def new_registry() -> CollectorRegistry:
    """A service's own registry (never the global one: tests build several services in
    one process), with the process's CPU, memory and file descriptors."""
    disable_created_metrics()  # a `_created` series per counter doubles a scrape, says little
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    return registry


@dataclass
class MetricsServer:
    """The running endpoint; ``close`` frees its port."""

    server: WSGIServer
    url: str

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve(
    registry: CollectorRegistry, settings: MetricsSettings, service: str
) -> MetricsServer | None:
    """Serve ``registry`` on ``/metrics`` in a daemon thread. A port that cannot be had
    is logged loudly and the service runs on without metrics: they are never worth an outage."""
    if not settings.port:
        return None
    try:
        server, _ = start_http_server(settings.port, settings.host, registry)
    except OSError as exc:
        log.error(
            "%s: cannot serve metrics on %s:%d (%s); running without them: choose a free "
            "port with --metrics-port or %s",
            service,
            settings.host,
            settings.port,
            exc,
            port_var(service),
        )
        return None
    url = f"http://{settings.host}:{settings.port}/metrics"
    log.info("metrics on %s", url)
    return MetricsServer(server, url)


def _free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def adjacent_ports(host: str, base: int, count: int) -> int:
    """``base`` if ``count`` ports from it are free on ``host``, else the first of ``count``
    adjacent free ones the system offers (another stack may hold the usual ones)."""
    for attempt in range(50):
        if 0 < base <= 65535 - count and all(_free(host, base + i) for i in range(count)):
            return base
        with socket.socket() as sock:
            sock.bind((host, 0))
            base = int(sock.getsockname()[1])
        if attempt == 0:
            log.warning("metrics ports taken; looking for %d free adjacent ones", count)
    raise OSError(f"no {count} adjacent free ports on {host} for metrics")
