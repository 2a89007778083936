"""The reliable path (outbox, acknowledged hand-off) against fire-and-forget, in one run.

Both paths, on SQLite and on a throwaway PostgreSQL server (``-pg``), run side by side
against the same router and bridge, each with its own API (gunicorn, 2 workers) and
database, measured in alternating rounds so that machine noise hits all alike, with the
same client and subscribers as ``bench.paths``. Prints a markdown table; writes JSON next
to it.

    python -m bench.delivery [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
from pathlib import Path

from bench.measure import latency, percentile, throughput
from bench.publishers import TOPIC, Rest
from bench.report import RESULTS
from bench.subscribers import SubscriberPool
from sandbar.heap import freeze_startup_heap
from sandbar.pgserver import PostgresServer
from tests.support.procs import Api, Bridge, Router, Topics

Results = dict[str, dict[str, list[float]]]


async def measure(
    apis: dict[str, Api], ws_url: str, rounds: int, count: int, rate: float, seconds: float
) -> Results:
    results: Results = {path: {"eps": [], "lat": []} for path in apis}
    publishers = {path: Rest(api.port, api.auth) for path, api in apis.items()}
    pids = {f"api-{path}": api.proc.pid for path, api in apis.items()}
    pool = await asyncio.to_thread(SubscriberPool(ws_url, TOPIC, 1).start)
    try:
        for path, pub in publishers.items():
            await pub.open()
            await throughput(pub, pool, f"warm-{path}", 200, pids)
        for r in range(rounds):
            for path, pub in publishers.items():
                got = await throughput(pub, pool, f"{path}-t{r}", count, pids)
                results[path]["eps"].append(got["events_per_s"])
                await asyncio.sleep(1.0)  # settle, then warm up at the rate (not counted)
                await latency(pub, pool, f"{path}-w{r}", rate, 1.0)
                results[path]["lat"] += await latency(pub, pool, f"{path}-l{r}", rate, seconds)
    finally:
        for pub in publishers.values():
            await pub.close()
        await asyncio.to_thread(pool.close)
    return results


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


def _run(
    work: Path, pg: PostgresServer, rounds: int, count: int, rate: float, seconds: float
) -> Results:
    router = Router(work).start()
    topics = Topics(work, router).start()
    bridge = Bridge(work, router).start()
    apis = {}
    for suffix in ("", "-pg"):
        for name, delivery in (("fire-and-forget", "fire_and_forget"), ("reliable", "reliable")):
            path = name + suffix
            (work / path).mkdir()
            url = pg.create_database("sandbar_bench") if suffix else None
            apis[path] = Api(work / path, bridge.endpoint, database_url=url, delivery=delivery)
    try:
        for api in apis.values():
            api.start()
            assert api.auth  # a signed-in writer
        freeze_startup_heap()  # the measuring client must not pause for full GC passes
        return asyncio.run(measure(apis, router.ws_url, rounds, count, rate, seconds))
    finally:
        for api in apis.values():
            api.stop()
        bridge.stop()
        topics.stop()
        router.stop()


def report(results: Results, rounds: int, count: int, rate: float) -> None:
    rows = []
    for path, r in results.items():
        eps = statistics.median(r["eps"])
        # against fire-and-forget on the same database
        base = statistics.median(results[path.replace("reliable", "fire-and-forget")]["eps"])
        rows.append(
            {
                "path": path,
                "events_per_s": round(eps),
                "ratio_to_fire_and_forget": round(eps / base, 2),
                "p50_ms": round(percentile(r["lat"], 50), 2),
                "p99_ms": round(percentile(r["lat"], 99), 2),
                "max_ms": round(max(r["lat"]), 2),
            }
        )
    print(
        f"\nDelivery paths: median of {rounds} rounds of {count} events (8 keep-alive "
        f"connections) for throughput; latency at {rate:.0f} events/s after 1 s of warm-up, "
        "POST sent → event received; -pg: on PostgreSQL (local, fsync on)\n"
    )
    print("| path | events/s | x fire-and-forget, same database | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['path']} | {row['events_per_s']} | {row['ratio_to_fire_and_forget']} | "
            f"{row['p50_ms']} | {row['p99_ms']} | {row['max_ms']} |"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "delivery.json"
    out.write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "python": platform.python_version(),
                "rows": rows,
                "raw": results,
            },
            indent=1,
        )
    )
    print(f"\n(raw data: {out})")


if __name__ == "__main__":
    main()
