"""Every path to the browsers side by side with the router's own ceiling, in one run.

Starts a router (with Crossbar's HTTP publisher added to a copy of the shipped config),
the topics service (the browsers' authorizer), the bridge, a throwaway PostgreSQL server
and the API under gunicorn twice on free ports (on SQLite and on PostgreSQL), then measures
limit, bridge, http-publisher, rest and rest-pg (and with ``--tracing`` rest-traced, the API
exporting spans) in alternating rounds:
events/s at 1 and 10 WebSocket subscribers, latency at a fixed rate, fan-out to N
subscribers, router memory per connection. Every event is counted at every subscriber.

    python -m bench.paths [--quick] [--tracing]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import report
from bench.measure import fanout, latency, throughput
from bench.publishers import TOPIC, Bridge, HttpPublisher, Limit, Publisher, Rest
from bench.subscribers import SubscriberPool
from sandbar.heap import freeze_startup_heap
from sandbar.paths import ROUTER_TEMPLATE
from sandbar.pgserver import PostgresServer
from tests.support.procs import ROOT, Api, Proc, Router, Topics, base_env, free_port
from tests.support.procs import Bridge as BridgeProc

#: Added under the web transport's paths in a copy of the shipped template; not shipped.
PUBLISHER_PATH = """\
          publish:
            type: publisher
            realm: sandbar
            role: backend
"""


def router_variant(work: Path, changes: dict[str, str], log_level: str = "warn") -> Router:
    """A router on a copy of the shipped template with each ``old -> new`` text replaced
    (every ``old`` must be there: a template edit must not silently void a benchmark)."""
    template = ROUTER_TEMPLATE.read_text(encoding="utf-8")
    for old, new in changes.items():
        if old not in template:
            raise RuntimeError(f"{ROUTER_TEMPLATE}: no {old!r} to change")
        template = template.replace(old, new, 1)
    copy = work / "router-bench.yaml"
    copy.write_text(template, encoding="utf-8")
    router = Router(work)
    argv = router.proc.argv
    argv[argv.index("--log-level") + 1] = log_level
    argv += ["--template", str(copy)]
    return router


def router_with_publisher(work: Path) -> Router:
    marker = "        paths:\n"
    return router_variant(work, {marker: marker + PUBLISHER_PATH})


class Settings:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.rounds = 1 if quick else 3
        #: events per burst on the fast paths; http-publisher and the rest paths a quarter
        self.count = 4000 if quick else 12000
        self.rate = 200.0
        self.seconds = 3.0 if quick else 10.0
        self.fanout = (100, 1000) if quick else (100, 1000, 3000)
        self.repeats = 5 if quick else 15


async def run(
    s: Settings, router: Router, bridge: BridgeProc, apis: dict[str, Api], pids: dict[str, int]
) -> dict[str, Any]:
    """``apis``: the rest paths by name, each an API on its own database."""
    publishers: list[Publisher] = [
        Limit(router.backend_url),
        Bridge(bridge.endpoint),
        HttpPublisher(router.port),
        *(Rest(api.port, api.auth, name=name) for name, api in apis.items()),
    ]
    for pub in publishers:
        await pub.open()
    eps: dict[str, dict[int, list[float]]] = {p.name: {1: [], 10: []} for p in publishers}
    cpu: dict[str, dict[str, int]] = {}
    lat: dict[str, list[float]] = {}
    fan: list[dict[str, Any]] = []
    try:
        for subs in (1, 10):
            pool = await asyncio.to_thread(SubscriberPool(router.ws_url, TOPIC, subs).start)
            try:
                for pub in publishers:  # warm up: connections, the database, the caches
                    await throughput(pub, pool, f"warm-{pub.name}-{subs}", 200, pids)
                for r in range(s.rounds):
                    for pub in publishers:
                        tag = f"{pub.name}-{subs}-{r}"
                        count = s.count if isinstance(pub, Limit | Bridge) else s.count // 4
                        # The router acknowledges before it delivers: keep the backlog at
                        # 10 subscribers under the WebSocket auto-ping timeout (5 s), past
                        # which the router drops a lagging subscriber.
                        count //= 1 if subs == 1 else 3
                        result = await throughput(pub, pool, tag, count, pids)
                        eps[pub.name][subs].append(result["events_per_s"])
                        cpu[f"{pub.name}/{subs}/{r}"] = result["cpu_percent"]
                        print(f"  {tag}: {result['events_per_s']:.0f} events/s", flush=True)
                if subs == 1:
                    for pub in publishers:
                        # Steady state at the rate, not the recovery from the bursts above:
                        # a second to settle and one of warm-up at the rate, not counted.
                        await asyncio.sleep(1.0)
                        await latency(pub, pool, f"warm-lat-{pub.name}", s.rate, 1.0)
                        lat[pub.name] = await latency(
                            pub, pool, f"lat-{pub.name}", s.rate, s.seconds
                        )
                        print(f"  latency {pub.name}: done", flush=True)
            finally:
                await asyncio.to_thread(pool.close)
        limit = publishers[0]
        for n in s.fanout:
            fan.append(await fanout(limit, router.ws_url, TOPIC, router.proc.pid, n, s.repeats))
            print(f"  fan-out {n}: {fan[-1]['median_ms']} ms", flush=True)
    finally:
        for pub in publishers:
            await pub.close()
    return {"eps": eps, "cpu": cpu, "latency": lat, "fanout": fan}


def _traced_api(work: Path, bridge: BridgeProc) -> tuple[Proc, Api]:
    """An OTLP receiver in a process of its own, and an API on SQLite exporting its spans
    there (tracing on, as README "Tracing and logs" says)."""
    port = free_port()
    argv = [sys.executable, "-m", "tests.support.otlp", "--port", str(port)]
    receiver = Proc("otlp", argv, base_env(), work, cwd=ROOT)
    receiver.start()
    (work / "api-traced").mkdir()
    api = Api(work / "api-traced", bridge.endpoint)
    api.proc.env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
    return receiver, api.start()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round, fewer events")
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="add rest-traced: the rest path with the API exporting spans (OTLP, to a receiver "
        "of the benchmark's own)",
    )
    args = parser.parse_args()
    s = Settings(args.quick)
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "api").mkdir()
        (work / "api-pg").mkdir()
        pg = PostgresServer()
        router = router_with_publisher(work).start()
        procs: list[Any] = [router]
        try:
            pg.init().start(durable=True)  # fsync on, as in production
            procs.append(topics := Topics(work, router).start())
            procs.append(bridge := BridgeProc(work, router).start())
            procs.append(api := Api(work / "api", bridge.endpoint).start())
            pg_url = pg.create_database("sandbar_bench")
            procs.append(api_pg := Api(work / "api-pg", bridge.endpoint, database_url=pg_url))
            api_pg.start()
            apis = {"rest": api, "rest-pg": api_pg}
            pids: dict[str, int] = {}
            if args.tracing:
                procs.extend(traced := _traced_api(work, bridge))
                apis["rest-traced"] = traced[-1]
                pids["api-traced"] = traced[-1].proc.pid
            assert all(a.auth for a in apis.values())  # a signed-in writer on each
            pids |= {
                "router": router.proc.pid,
                "topics": topics.proc.pid,
                "bridge": bridge.proc.pid,
                "api": api.proc.pid,
                "api-pg": api_pg.proc.pid,
                "postgres": pg.pid,  # the postmaster: every backend of the cluster is its child
            }
            print(f"stack up in {time.monotonic() - began:.0f}s; measuring", flush=True)
            freeze_startup_heap()  # the measuring client must not pause for full GC passes
            results = asyncio.run(run(s, router, bridge, apis, pids))
        finally:
            for proc in reversed(procs):
                proc.stop()
            pg.remove()
    results["settings"] = vars(s)
    results["postgres"] = {"version": pg.bin.parent.name, "fsync": True}
    results["duration_s"] = round(time.monotonic() - began)
    results["medians"] = {
        path: {subs: statistics.median(v) for subs, v in by_subs.items()}
        for path, by_subs in results["eps"].items()
    }
    report.publish(results)


if __name__ == "__main__":
    main()
