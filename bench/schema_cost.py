"""What checking event schemas costs on the REST path: ``POST /articles`` in process
(Flask's test client, SQLite, the outbox), with the shipped schemas and with none, in
alternating rounds; and the check of one ``article.created`` payload alone.

    python -m bench.schema_cost [--requests N] [--rounds R]

In process on purpose: it isolates the check from gunicorn and the network, so the share
it reports is an upper bound of what a served request pays.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

from flask import Flask

from api.app import create_app
from api.auth import add_user
from api.config import ApiConfig
from api.signals import events
from sandbar.procs import TOKEN_SECRET, free_port
from sandbar.schemas import EventSchemas


def _app(work: Path) -> tuple[Flask, dict[str, str]]:
    config = ApiConfig(
        database_url=f"sqlite:///{work / 'api.db'}",
        token_secret=TOKEN_SECRET,
        bridge_endpoint=f"tcp://127.0.0.1:{free_port()}",  # nobody there: sends are queued
    )
    app = create_app(config)
    add_user(app.extensions["sandbar_db"], "bench", "correct horse battery")
    client = app.test_client()
    signed = client.post(
        "/auth/token", json={"username": "bench", "password": "correct horse battery"}
    )
    return app, {"Authorization": f"Bearer {signed.get_json()['token']}"}


def _posts(app: Flask, auth: dict[str, str], count: int) -> float:
    """Seconds per POST /articles."""
    client = app.test_client()
    started = time.perf_counter()
    for i in range(count):
        response = client.post("/articles", json={"title": f"t{i}", "body": "b"}, headers=auth)
        assert response.status_code == 201, response.get_data(as_text=True)
    return (time.perf_counter() - started) / count


def _check_alone(count: int = 100_000) -> float:
    payload = {"id": 1, "title": "t", "body": "b", "created_at": "2026-12-01T12:00:00Z"}
    started = time.perf_counter()
    for _ in range(count):
        events.schemas.check("article.created", payload)
    return (time.perf_counter() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.schema_cost")
    parser.add_argument("--requests", type=int, default=1000, help="per round and setting")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the unreachable bridge's warnings
    with tempfile.TemporaryDirectory() as work:
        app, auth = _app(Path(work))
        push = app.extensions["sandbar_push"]
        typed, untyped = push.schemas, EventSchemas()
        _posts(app, auth, 200)  # warm up
        times: dict[str, list[float]] = {"typed": [], "untyped": []}
        settings = [("typed", typed), ("untyped", untyped)]
        for round_ in range(args.rounds):  # the order alternates: the table grows meanwhile
            for name, schemas in settings[:: 1 if round_ % 2 else -1]:
                push.schemas = schemas
                times[name].append(_posts(app, auth, args.requests))
    typed_s, untyped_s = (statistics.median(times[k]) for k in ("typed", "untyped"))
    alone = _check_alone()
    print(f"POST /articles, median of {args.rounds} rounds of {args.requests}:")
    print(f"  with schemas   {typed_s * 1e6:8.1f} us")
    print(f"  without        {untyped_s * 1e6:8.1f} us")
    print(
        f"  difference     {(typed_s - untyped_s) * 1e6:+8.1f} us ({(typed_s / untyped_s - 1) * 100:+.2f} %)"
    )
    print(
        f"one article.created check alone: {alone * 1e6:.2f} us ({alone / untyped_s * 100:.2f} % of a request)"
    )


if __name__ == "__main__":
    main()
