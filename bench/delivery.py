"""The REST path against bare Flask, reliable against fire-and-forget, in one run.

The bare path is the same Flask app without Sandbar (bench/bare_app.py): the yardstick.
Both delivery paths, on SQLite and on a throwaway PostgreSQL server (``-pg``), run side by side
against the same router and bridge, each with its own API (gunicorn, 2 workers) and
database, measured in alternating rounds so that machine noise hits all alike, with the
same client and subscribers as ``bench.paths``. The reliable path on SQLite runs twice more,
with the API's metrics on (``reliable+metrics``) and with tracing on (``reliable+tracing``),
so that their cost is measured in the same rounds. Prints a markdown table; writes JSON next
to it.

    python -m bench.delivery [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import requests

from api.auth import Tokens, add_user
from api.db import create_schema, make_engine
from api.serve import ACCESS_LOG_FORMAT
from bench.measure import answered, burst, latency, percentile, throughput
from bench.publishers import TOPIC, Rest
from bench.report import RESULTS
from bench.subscribers import SubscriberPool
from sandbar.heap import freeze_startup_heap
from sandbar.paths import ROOT
from sandbar.pgserver import PostgresServer
from sandbar.procs import BIN, TOKEN_SECRET, Proc, base_env, free_port, wait_until
from tests.support.procs import Api, Bridge, Router, Topics

Results = dict[str, dict[str, list[float]]]


async def measure(
    apis: dict[str, Api | BareServer],
    ws_url: str,
    rounds: int,
    count: int,
    rate: float,
    seconds: float,
) -> Results:
    """Every path in each round, one after the other (each round starting one path further
    on). The bare app sends no event: its figures are POSTs answered per second and the
    time to the answer."""
    results: Results = {path: {"eps": [], "lat": []} for path in apis}
    publishers = {path: Rest(api.port, api.auth) for path, api in apis.items()}
    pids = {f"api-{path}": api.proc.pid for path, api in apis.items()}
    pool = await asyncio.to_thread(SubscriberPool(ws_url, TOPIC, 1).start)
    try:
        for path, pub in publishers.items():
            await pub.open()
            if isinstance(apis[path], BareServer):
                await burst(pub, 200)
            else:
                await throughput(pub, pool, f"warm-{path}", 200, pids)
        for r in range(rounds):
            for path in _rotated(list(publishers), r):
                pub = publishers[path]
                bare = isinstance(apis[path], BareServer)
                if bare:
                    eps = await burst(pub, count)
                else:
                    eps = (await throughput(pub, pool, f"{path}-t{r}", count, pids))["events_per_s"]
                results[path]["eps"].append(eps)
                await asyncio.sleep(1.0)  # settle, then warm up at the rate (not counted)
                if bare:
                    await answered(pub, rate, 1.0)
                    results[path]["lat"] += await answered(pub, rate, seconds)
                else:
                    await latency(pub, pool, f"{path}-w{r}", rate, 1.0)
                    results[path]["lat"] += await latency(pub, pool, f"{path}-l{r}", rate, seconds)
    finally:
        for pub in publishers.values():
            await pub.close()
        await asyncio.to_thread(pool.close)
    return results


def _rotated(paths: list[str], r: int) -> list[str]:
    """Round ``r`` starts ``r`` paths further on, so no path always runs after the same one."""
    return paths[r % len(paths) :] + paths[: r % len(paths)]


class BareServer:
    """The bare app under gunicorn with the kit's settings (2 workers x 4 threads, gthread,
    the same access log), on a database the kit's migrations made, with one writer."""

    def __init__(self, workdir: Path, database_url: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        database_url = database_url or f"sqlite:///{workdir / 'bare.db'}"
        engine = make_engine(database_url)
        create_schema(engine)
        add_user(engine, "writer", "correct horse battery")
        engine.dispose()
        self.auth = {"Authorization": f"Bearer {Tokens(TOKEN_SECRET, 3600).issue('writer', 1)}"}
        argv = [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{self.port}"]
        argv += ["--workers", "2", "--threads", "4", "--worker-class", "gthread"]
        argv += ["--access-logfile", "-", "--access-logformat", ACCESS_LOG_FORMAT]
        argv += ["bench.bare_app:create_app()"]
        env = base_env(SANDBAR_API_DATABASE_URL=database_url, PYTHONPATH=str(ROOT))
        self.proc = Proc("bare", argv, env, workdir, cwd=ROOT)

    def start(self) -> BareServer:
        self.proc.start()
        wait_until(lambda: requests.get(f"{self.url}/healthz", timeout=2).ok, 20, "bare app up")
        return self

    def stop(self) -> None:
        self.proc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and events")
    args = parser.parse_args()
    rounds, count, seconds = (2, 500, 3) if args.quick else (3, 2000, 8)
    rate = 200.0
    with tempfile.TemporaryDirectory() as tmp:
        pg = PostgresServer()
        try:
            pg.init().start(durable=True)  # fsync on, as in production
            results = _run(Path(tmp), pg, rounds, count, rate, seconds)
        finally:
            pg.remove()
    report(results, rounds, count, rate)


#: the reliable path (SQLite) with the API's metrics on, and with tracing on
COST_METRICS, COST_TRACING = "reliable+metrics", "reliable+tracing"

#: the issue's targets (verdicts, not tests): x bare on the same database, and latency
TARGETS = {"reliable": 0.6, "fire-and-forget": 0.85}
P99_TARGET_MS = 4.0


def _run(
    work: Path, pg: PostgresServer, rounds: int, count: int, rate: float, seconds: float
) -> Results:
    router = Router(work).start()
    topics = Topics(work, router).start()
    bridge = Bridge(work, router).start()
    receiver, otlp_url = _otlp_receiver(work)
    apis: dict[str, Api | BareServer] = {}
    for suffix in ("", "-pg"):
        for name, delivery in (("fire-and-forget", "fire_and_forget"), ("reliable", "reliable")):
            path = name + suffix
            (work / path).mkdir()
            url = pg.create_database("sandbar_bench") if suffix else None
            apis[path] = Api(work / path, bridge.endpoint, database_url=url, delivery=delivery)
        (work / f"bare{suffix}").mkdir()
        url = pg.create_database("sandbar_bench") if suffix else None
        apis[f"bare{suffix}"] = BareServer(work / f"bare{suffix}", url)
    apis.update(_costed(work, bridge.endpoint, otlp_url))
    try:
        for api in apis.values():
            api.start()
            assert api.auth  # a signed-in writer
        freeze_startup_heap()  # the measuring client must not pause for full GC passes
        return asyncio.run(measure(apis, router.ws_url, rounds, count, rate, seconds))
    finally:
        for api in apis.values():
            api.stop()
        receiver.stop()
        bridge.stop()
        topics.stop()
        router.stop()


def _otlp_receiver(work: Path) -> tuple[Proc, str]:
    """A real OTLP/HTTP receiver (tests/support/otlp.py) in a process of its own."""
    port = free_port()
    argv = [sys.executable, "-m", "tests.support.otlp", "--port", str(port)]
    receiver = Proc("otlp", argv, base_env(), work, cwd=ROOT)
    receiver.start()
    return receiver, f"http://127.0.0.1:{port}"


def _costed(work: Path, endpoint: str, otlp_url: str) -> dict[str, Api]:
    """The reliable path on SQLite with one observability feature on, as ``sandbar up``
    runs it: metrics (gunicorn multiprocess mode, the master serving /metrics on
    SANDBAR_API_METRICS_PORT), or tracing (spans exported over OTLP)."""
    (work / COST_METRICS).mkdir()
    metered = Api(work / COST_METRICS, endpoint, metrics_port=str(free_port()))
    (work / COST_TRACING).mkdir()
    traced = Api(work / COST_TRACING, endpoint)
    traced.proc.env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp_url
    return {COST_METRICS: metered, COST_TRACING: traced}


def _rows(results: Results) -> list[dict[str, Any]]:
    rows = []
    for path, r in results.items():
        eps = statistics.median(r["eps"])
        pg = "-pg" if path.endswith("-pg") else ""
        bare = statistics.median(results[f"bare{pg}"]["eps"])
        forget = results.get(path.replace("reliable", "fire-and-forget"))
        rows.append(
            {
                "path": path,
                "events_per_s": round(eps),
                "x_bare": round(eps / bare, 2),
                "x_fire_and_forget": round(eps / statistics.median(forget["eps"]), 2)
                if forget and not path.startswith("bare")
                else None,
                "x_reliable": round(eps / statistics.median(results["reliable"]["eps"]), 3)
                if "+" in path
                else None,
                "p50_ms": round(percentile(r["lat"], 50), 2),
                "p99_ms": round(percentile(r["lat"], 99), 2),
                "max_ms": round(max(r["lat"]), 2),
            }
        )
    return rows


def _verdicts(rows: list[dict[str, Any]], rate: float) -> list[str]:
    lines = []
    for row in rows:
        mode = row["path"].removesuffix("-pg")
        if mode in TARGETS:
            target = TARGETS[mode]
            ok = "PASS" if row["x_bare"] >= target else "MISS"
            lines.append(f"{ok} {row['path']}: {row['x_bare']} x bare (target >= {target})")
            ok = "PASS" if row["p99_ms"] <= P99_TARGET_MS else "MISS"
            lines.append(
                f"{ok} {row['path']}: p99 {row['p99_ms']} ms at {rate:.0f} events/s "
                f"(target <= {P99_TARGET_MS:.0f} ms)"
            )
    return lines


def _costs(rows: list[dict[str, Any]]) -> list[str]:
    """What metrics and tracing cost the reliable REST path, measured in the same rounds."""
    by_path = {row["path"]: row for row in rows}
    base = by_path["reliable"]
    lines = []
    for path in (COST_METRICS, COST_TRACING):
        row = by_path[path]
        lines.append(
            f"COST {path}: {row['x_reliable']} x reliable's events/s ({row['events_per_s']} vs "
            f"{base['events_per_s']}: {100 * (1 - row['x_reliable']):+.1f} %); p50 {row['p50_ms']} vs "
            f"{base['p50_ms']} ms, p99 {row['p99_ms']} vs {base['p99_ms']} ms"
        )
    return lines


def report(results: Results, rounds: int, count: int, rate: float) -> None:
    rows = _rows(results)
    print(
        f"\nThe REST path against the same Flask app without Sandbar (bare), in one run: "
        f"median of {rounds} rounds of {count} POSTs (8 keep-alive connections), gunicorn "
        f"2 workers x 4 threads for each; events/s counted at a subscriber (bare: POSTs "
        f"answered/s); latency at {rate:.0f}/s after 1 s of warm-up, POST sent -> event "
        "received (bare: -> answer); -pg: on PostgreSQL (local, fsync on); reliable+metrics: "
        "the API's metrics on (multiprocess mode, /metrics on its own port), reliable+tracing: "
        "spans exported over OTLP to a local receiver (both SQLite, x reliable: their cost)\n"
    )
    print(
        "| path | events/s | x bare | x fire-and-forget | x reliable | p50 ms | p99 ms | max ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        forget = "" if row["x_fire_and_forget"] is None else row["x_fire_and_forget"]
        reliable = "" if row["x_reliable"] is None else row["x_reliable"]
        print(
            f"| {row['path']} | {row['events_per_s']} | {row['x_bare']} | {forget} | "
            f"{reliable} | {row['p50_ms']} | {row['p99_ms']} | {row['max_ms']} |"
        )
    verdicts = _verdicts(rows, rate) + _costs(rows)
    print("\n" + "\n".join(verdicts))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "delivery.json"
    out.write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "python": platform.python_version(),
                "rows": rows,
                "verdicts": verdicts,
                "raw": results,
            },
            indent=1,
        )
    )
    print(f"\n(raw data: {out})")


if __name__ == "__main__":
    main()
