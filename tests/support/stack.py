"""Part of the `sandbar up` stack, run by `sandbar up`'s own code, for tests that stop many.

``python -m tests.support.stack --run-dir D --router-port R --backend-port B --api-port A
--bridge-port Z``
is ``sandbar up`` (``sandbar.cli.up``: its supervisor, signal handling, demo user and
announcement) without the router: the real topics and bridge keep retrying it, so only
the API (gunicorn, two workers) is waited for. It is ready in about a second where the
whole stack takes five; what those tests check (signals, process groups, parent death)
runs the same code.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sandbar import cli
from sandbar.logs import setup_logging
from sandbar.supervisor import Service

_build_services = cli.build_services


def _without_router(config: cli.UpConfig, secret: str) -> list[Service]:
    services = [s for s in _build_services(config, secret) if s.name != "router"]
    for service in services:
        if service.name != "api":
            service.ready = None  # their check needs the router
    return services


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.stack")
    for name in ("router-port", "backend-port", "api-port", "bridge-port"):
        parser.add_argument(f"--{name}", type=int, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    args = parser.parse_args()
    setup_logging()
    cli.build_services = _without_router
    raise SystemExit(cli.up(cli.UpConfig(**vars(args))))


if __name__ == "__main__":
    main()
