"""Part of the `sandbar up` stack, run by `sandbar up`'s own code, for tests that stop many.

``python -m tests.support.stack --run-dir D --router-port R --backend-port B --bridge-port Z``
is ``sandbar up`` (``sandbar.cli.up``: its supervisor and signal handling) running only
the real topics and bridge services, which keep retrying the router that is not there;
no readiness to wait for, no demo user to create (that needs the API). It is ready in a
second where the whole stack takes five, for tests that stop a stack many times: what
they check (signals, process groups, parent death) is the same code.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sandbar import cli
from sandbar.logs import setup_logging
from sandbar.supervisor import Service

_build_services = cli.build_services


def _topics_and_bridge(config: cli.UpConfig, secret: str) -> list[Service]:
    services = [s for s in _build_services(config, secret) if s.name in ("topics", "bridge")]
    for service in services:
        service.ready = None  # their check needs the router
    return services


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.stack")
    for name in ("router-port", "backend-port", "bridge-port"):
        parser.add_argument(f"--{name}", type=int, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--metrics-port", type=int, default=0)
    args = parser.parse_args()
    setup_logging(service="up")
    cli.build_services = _topics_and_bridge
    cli._ensure_demo_user = lambda config: False  # the demo user lives in the API's database
    raise SystemExit(cli.up(cli.UpConfig(**vars(args))))


if __name__ == "__main__":
    main()
