"""Where one ``POST /articles`` spends its time: the kit against the bare Flask app.

Both apps run in this process (no gunicorn, no HTTP: Flask's test client drives the WSGI
app), the kit against a real router and bridge so that acknowledgements flow. Prints µs
per POST for each, then cProfile's top functions by own time for the kit.

    python -m bench.profile_post [--posts N] [--delivery reliable|fire_and_forget]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from flask import Flask

from api.app import create_app
from api.auth import Tokens, add_user
from api.config import ApiConfig
from bench import bare_app
from bench.stages import StageMeter
from sandbar.pgserver import PostgresServer
from sandbar.procs import TOKEN_SECRET, Bridge, Router, session_keys


def _thread_cpu() -> dict[int, float]:
    return {t.id: t.user_time + t.system_time for t in psutil.Process().threads()}


def _post_loop(app: Flask, token: str, posts: int, cpu: dict[str, float] | None = None) -> float:
    """Seconds for ``posts`` POSTs, after a warm-up; ``cpu``: filled with µs per POST of
    CPU by thread (this one, and the others of the process: relay, checkpoints, ZeroMQ)."""
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    body: dict[str, Any] = {"title": "t", "body": "b"}
    for _ in range(50):
        assert client.post("/articles", json=body, headers=headers).status_code == 201
    before = _thread_cpu()
    start = time.perf_counter()
    for _ in range(posts):
        client.post("/articles", json=body, headers=headers)
    elapsed = time.perf_counter() - start
    if cpu is not None:
        after, me = _thread_cpu(), threading.get_native_id()
        names = {t.native_id: t.name for t in threading.enumerate()}
        for tid, total in after.items():
            name = "request thread" if tid == me else names.get(tid, "ZeroMQ I/O")
            cpu[name] = cpu.get(name, 0.0) + (total - before.get(tid, 0.0)) / posts * 1e6
    return elapsed


def _print_stages(app: Flask, token: str, posts: int) -> None:
    meter = StageMeter()
    meter.wrap_app(app)
    with meter.installed():
        cpu: dict[str, float] = {}
        _post_loop(app, token, posts, cpu)
    print(f"\nrequest thread CPU per POST: {cpu['request thread']:.0f} µs (metered)")
    for label, seconds in meter.cpu.items():
        print(f"  {label:40} {seconds / posts * 1e6:6.0f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--delivery", default="reliable")
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument(
        "--postgres", action="store_true", help="on a throwaway PostgreSQL server (fsync on)"
    )
    parser.add_argument("--stages", action="store_true", help="CPU per stage, no cProfile")
    parser.add_argument(
        "--timer", choices=("wall", "cpu"), default="wall", help="cpu: this thread's CPU only"
    )
    args = parser.parse_args()
    session_keys()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        router = Router(work).start()
        bridge = Bridge(work, router).start()
        pg = PostgresServer() if args.postgres else None
        try:
            url = f"sqlite:///{work / 'api.db'}"
            if pg is not None:
                url = pg.init().start(durable=True).create_database("sandbar_profile")
            config = ApiConfig(
                database_url=url,
                bridge_endpoint=bridge.endpoint,
                token_secret=TOKEN_SECRET,
                delivery=args.delivery,
            )
            kit = create_app(config)
            add_user(kit.extensions["sandbar_db"], "writer", "correct horse battery")
            token = Tokens(TOKEN_SECRET, 3600).issue("writer", 1)
            os.environ.update(SANDBAR_API_DATABASE_URL=url, SANDBAR_API_TOKEN_SECRET=TOKEN_SECRET)
            bare = bare_app.create_app()
            for name, app in (("bare", bare), ("kit", kit), ("bare", bare), ("kit", kit)):
                cpu: dict[str, float] = {}
                us = _post_loop(app, token, args.posts, cpu) / args.posts * 1e6
                threads = ", ".join(f"{k} {v:.0f}" for k, v in cpu.items())
                print(f"{name:5} {us:7.0f} µs per POST (in-process, test client); CPU: {threads}")
            if args.stages:
                _print_stages(kit, token, args.posts)
                return
            timer = time.perf_counter if args.timer == "wall" else time.thread_time
            profiler = cProfile.Profile(timer)
            profiler.enable()
            _post_loop(kit, token, args.posts)
            profiler.disable()
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(args.top)
            stats.sort_stats("cumulative").print_stats(args.top * 2)
        finally:
            bridge.stop()
            router.stop()
            if pg is not None:
                pg.remove()


if __name__ == "__main__":
    main()
