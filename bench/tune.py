"""What each tuning knob is worth: the shipped setting against the alternatives, in one run.

For every knob, a stack per setting runs side by side (the router, bridge or API
changed, the rest shared where it can be), measured in alternating rounds so the
machine's noise hits every setting alike; the table shows the median of the rounds
and its ratio to the shipped setting.

    python -m bench.tune [--quick] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.measure import fanout, throughput
from bench.paths import router_variant
from bench.publishers import TOPIC, Bridge, Limit, Publisher, Rest
from bench.report import RESULTS
from bench.subscribers import SubscriberPool
from tests.support.procs import SHIPPED_BRIDGE_CONFIG, Api, Topics
from tests.support.procs import Bridge as BridgeProc


@dataclass
class Setting:
    label: str
    router: dict[str, str] = field(default_factory=dict)  # template text -> replacement
    router_log_level: str = "warn"
    bridge: dict[str, Any] = field(default_factory=dict)  # merged into the shipped YAML
    api: dict[str, str] = field(default_factory=dict)  # ApiConfig fields, and workers/threads


@dataclass
class Knob:
    name: str
    path: str  # what is measured: limit, bridge, rest, or fanout
    settings: list[Setting]  # the first one is what Sandbar ships


KNOBS = [
    Knob(
        "router log level",
        "limit",
        [Setting("info (sandbar-router default)", router_log_level="info"), Setting("warn")],
    ),
    Knob(
        "permission cache, backend role",
        "limit",
        [
            Setting("cache: true (shipped)"),
            Setting("cache: false", router={"cache: true": "cache: false"}),
        ],
    ),
    Knob(
        "bridge -> router serializer",
        "bridge",
        [Setting("msgpack (shipped)"), Setting("json", bridge={"router": {"serializer": "json"}})],
    ),
    Knob(
        "bridge publish.max_in_flight",
        "bridge",
        [
            Setting("64 (shipped)"),
            Setting("16", bridge={"publish": {"max_in_flight": 16}}),
            Setting("256", bridge={"publish": {"max_in_flight": 256}}),
        ],
    ),
    Knob(
        "event_dispatching_chunk_size, fan-out to 1000",
        "fanout",
        [
            Setting("100 (Crossbar default, shipped)"),
            Setting(
                "1000",
                router={
                    "      - name: sandbar\n": "      - name: sandbar\n"
                    "        options:\n          event_dispatching_chunk_size: 1000\n"
                },
            ),
        ],
    ),
    Knob(
        "API gunicorn workers x threads",
        "rest",
        [
            Setting("2 x 4 (shipped)"),
            Setting("3 x 4", api={"workers": "3"}),
            Setting("2 x 1 (sync)", api={"threads": "1"}),
        ],
    ),
    Knob(
        "API delivery",
        "rest",
        [
            Setting("reliable (shipped)"),
            Setting("fire_and_forget", api={"delivery": "fire_and_forget"}),
        ],
    ),
]


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = _merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return merged


class Stack:
    """One setting's processes, on free ports of their own."""

    def __init__(self, work: Path, setting: Setting, path: str) -> None:
        self.setting, self.path = setting, path
        self.procs: list[Any] = []
        self.router = router_variant(work, setting.router, setting.router_log_level)
        self.work = work

    def start(self) -> Stack:
        self.procs.append(self.router.start())
        self.procs.append(Topics(self.work, self.router).start())
        self.pids = {"router": self.router.proc.pid}
        if self.path in ("bridge", "rest"):
            shipped = yaml.safe_load(SHIPPED_BRIDGE_CONFIG.read_text())
            config = _merge(shipped, self.setting.bridge) if self.setting.bridge else None
            self.bridge = BridgeProc(self.work, self.router, config).start()
            self.procs.append(self.bridge)
        if self.path == "rest":
            api = dict(self.setting.api)  # SANDBAR_API_<KEY>; THREADS goes to the server
            workers = int(api.pop("workers", "2"))
            (self.work / "api").mkdir()
            self.api = Api(self.work / "api", self.bridge.endpoint, workers, None, **api)
            self.procs.append(self.api.start())
        return self

    def publisher(self) -> Publisher:
        if self.path == "bridge":
            return Bridge(self.bridge.endpoint)
        if self.path == "rest":
            return Rest(self.api.port, self.api.auth)
        return Limit(self.router.backend_url)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@contextlib.contextmanager
def stacks(knob: Knob) -> Iterator[list[Stack]]:
    with tempfile.TemporaryDirectory() as tmp:
        started: list[Stack] = []
        try:
            for i, setting in enumerate(knob.settings):
                work = Path(tmp) / str(i)
                work.mkdir()
                stack = Stack(work, setting, knob.path)
                started.append(stack)  # stopped below even if it fails half-started
                stack.start()
            yield started
        finally:
            for stack in started:
                stack.stop()


async def measure_knob(knob: Knob, rounds: int, count: int) -> list[list[float]]:
    results: list[list[float]] = [[] for _ in knob.settings]
    with stacks(knob) as running:
        publishers = [stack.publisher() for stack in running]
        for pub in publishers:
            await pub.open()
        try:
            if knob.path == "fanout":
                for _ in range(rounds):
                    for i, (stack, pub) in enumerate(zip(running, publishers, strict=True)):
                        fan = await fanout(
                            pub, stack.router.ws_url, TOPIC, stack.pids["router"], 1000, 5
                        )
                        results[i].append(fan["median_ms"])
                return results
            pools = [
                await asyncio.to_thread(SubscriberPool(s.router.ws_url, TOPIC, 1).start)
                for s in running
            ]
            try:
                n = count // 4 if knob.path == "rest" else count
                for i, pub in enumerate(publishers):
                    await throughput(pub, pools[i], f"warm-{i}", 300, running[i].pids)
                for r in range(rounds):
                    for i, pub in enumerate(publishers):
                        got = await throughput(pub, pools[i], f"{i}-{r}", n, running[i].pids)
                        results[i].append(got["events_per_s"])
            finally:
                for pool in pools:
                    await asyncio.to_thread(pool.close)
        finally:
            for pub in publishers:
                await pub.close()
    return results


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| knob | setting | measured | median | x shipped | rounds |",
        "|---|---|---|---:|---:|---|",
    ]
    for row in rows:
        unit = "ms to the last" if row["path"] == "fanout" else f"{row['path']} events/s"
        lines.append(
            f"| {row['knob']} | {row['setting']} | {unit} | {row['median']:.1f} | "
            f"{row['ratio']:.2f} | {', '.join(f'{v:.0f}' for v in row['rounds'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and events")
    parser.add_argument("--only", nargs="*", help="knobs whose name contains one of these words")
    args = parser.parse_args()
    rounds, count = (2, 4000) if args.quick else (3, 12000)
    knobs = [k for k in KNOBS if not args.only or any(w in k.name for w in args.only)]
    began = time.monotonic()
    rows = []
    for knob in knobs:
        print(f"{knob.name}: measuring {len(knob.settings)} settings", flush=True)
        results = asyncio.run(measure_knob(knob, rounds, count))
        shipped = statistics.median(results[0])
        for setting, values in zip(knob.settings, results, strict=True):
            median = statistics.median(values)
            rows.append(
                {
                    "knob": knob.name,
                    "setting": setting.label,
                    "path": knob.path,
                    "median": median,
                    "ratio": median / shipped,
                    "rounds": values,
                }
            )
            print(f"  {setting.label}: {median:.1f}", flush=True)
    print()
    print(table(rows))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "tune.json"
    out.write_text(
        json.dumps({"rows": rows, "duration_s": round(time.monotonic() - began)}, indent=1)
    )
    print(f"\n(run took {time.monotonic() - began:.0f} s; data: {out})")


if __name__ == "__main__":
    main()
