"""The reliable path (outbox, acknowledged hand-off) against fire-and-forget, in one run.

Both paths run side by side against the same router and bridge, each with its own
API (gunicorn, 2 workers) and database, measured in alternating rounds so that
machine noise hits both alike. Prints a markdown table; writes JSON next to it.

    python -m bench.delivery [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from tests.support.procs import Api, Bridge, Router, Topics
from tests.support.wamp import Subscriber

RESULTS = Path(__file__).parent / "results"


class Clocked(Subscriber):
    """Records when each article (by title) arrived."""

    def __init__(self, url: str) -> None:
        super().__init__(url, ["articles"])
        self.arrived: dict[str, float] = {}

    def _collector(self, topic: str) -> Any:
        def on_event(*args: Any, **kwargs: Any) -> None:
            self.arrived[args[0]["title"]] = time.perf_counter()

        return on_event


def throughput(api: Api, sub: Clocked, tag: str, count: int) -> float:
    """Events/s from the first POST to the last event received, 8 concurrent clients."""
    titles = [f"{tag}-{i}" for i in range(count)]
    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda t: requests.post(
                    f"{api.url}/articles",
                    headers=api.auth,
                    json={"title": t, "body": "b"},
                    timeout=30,
                ),
                titles,
            )
        )
    deadline = time.monotonic() + 60
    while not all(t in sub.arrived for t in titles):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{tag}: lost {sum(t not in sub.arrived for t in titles)} events")
        time.sleep(0.005)
    return count / (max(sub.arrived[t] for t in titles) - start)


def latency(api: Api, sub: Clocked, tag: str, rate: float, seconds: float) -> list[float]:
    """POST at a fixed rate below saturation; ms from sending the POST to receiving the event."""
    sent: dict[str, float] = {}
    session = requests.Session()
    interval, n = 1 / rate, int(rate * seconds)
    begin = time.perf_counter()
    for i in range(n):
        pause = begin + i * interval - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        title = f"{tag}-{i}"
        sent[title] = time.perf_counter()
        session.post(
            f"{api.url}/articles", headers=api.auth, json={"title": title, "body": "b"}, timeout=30
        )
    deadline = time.monotonic() + 30
    while not all(t in sub.arrived for t in sent):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{tag}: lost {sum(t not in sub.arrived for t in sent)} events")
        time.sleep(0.005)
    return [(sub.arrived[t] - sent[t]) * 1000 for t in sent]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and events")
    args = parser.parse_args()
    rounds, count, seconds = (2, 500, 3) if args.quick else (3, 2000, 8)
    rate = 200.0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "ff").mkdir()
        (work / "rel").mkdir()
        router = Router(work).start()
        topics = Topics(work, router).start()
        bridge = Bridge(work, router).start()
        apis = {
            "fire-and-forget": Api(work / "ff", bridge.endpoint, delivery="fire_and_forget"),
            "reliable": Api(work / "rel", bridge.endpoint),
        }
        for api in apis.values():
            api.start()
            assert api.auth  # a signed-in writer, before threads share it
        sub = Clocked(router.ws_url).start()
        results: dict[str, dict[str, list[float]]] = {p: {"eps": [], "lat": []} for p in apis}
        try:
            for r in range(rounds):
                for path, api in apis.items():
                    results[path]["eps"].append(throughput(api, sub, f"{path}-t{r}", count))
                    results[path]["lat"] += latency(api, sub, f"{path}-l{r}", rate, seconds)
        finally:
            sub.close()
            for api in apis.values():
                api.stop()
            bridge.stop()
            topics.stop()
            router.stop()
    report(results, rounds, count, rate)


def report(
    results: dict[str, dict[str, list[float]]], rounds: int, count: int, rate: float
) -> None:
    base = statistics.median(results["fire-and-forget"]["eps"])
    rows = []
    for path, r in results.items():
        eps = statistics.median(r["eps"])
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
        f"\nDelivery paths: median of {rounds} rounds of {count} events (8 clients) for "
        f"throughput; latency at {rate:.0f} events/s, POST sent → event received\n"
    )
    print("| path | events/s | x fire-and-forget | p50 ms | p99 ms | max ms |")
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
    threading.current_thread().name = "bench"
    main()
