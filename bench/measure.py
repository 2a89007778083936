"""Measurements shared by every path: burst throughput, paced latency, fan-out, CPU and RSS."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Any

import psutil

from bench.publishers import Publisher
from bench.subscribers import Arrivals, SubscriberPool


def tree_cpu(pid: int, children: bool = True) -> float:
    """CPU seconds (user + system) of a process and (optionally) its children, the living
    and those that exited and were reaped (a PostgreSQL backend per connection comes and
    goes: its CPU then counts in its parent's children times)."""
    try:
        root = psutil.Process(pid)
        tree = [root, *(root.children(recursive=True) if children else [])]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in tree:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:  # exited since the listing: its parent's times have it
            continue
        total += times.user + times.system
        if children:
            total += times.children_user + times.children_system
    return total


def tree_rss(pid: int) -> int:
    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])


class CpuMeter:
    """Per-process CPU share (% of one core) over a stretch of wall time."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {**pids, "bench": os.getpid()}

    def _read(self, name: str) -> float:
        return tree_cpu(self.pids[name], children=name != "bench")  # bench's children: the rest

    def __enter__(self) -> CpuMeter:
        self.start = {name: self._read(name) for name in self.pids}
        self.wall = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self.wall
        self.percent = {
            name: round(100 * (self._read(name) - self.start[name]) / wall) for name in self.pids
        }


def _check(arrivals: Arrivals, keys: list[str], subscribers: int) -> None:
    missing = [k for k in keys if k not in arrivals]
    wrong = [k for k in keys if k in arrivals and arrivals[k][2] != subscribers]
    if missing or wrong or len(arrivals) != len(keys):
        raise RuntimeError(
            f"sent {len(keys)} events: {len(missing)} never arrived, {len(wrong)} arrived at the "
            f"wrong number of subscribers, {len(arrivals) - len(keys) + len(missing)} unexpected"
        )


async def throughput(
    pub: Publisher, pool: SubscriberPool, tag: str, count: int, pids: dict[str, int]
) -> dict[str, Any]:
    """Send ``count`` events as fast as the path takes them (its window of concurrent sends);
    events/s from the first send to the last arrival at the last subscriber."""
    keys = [f"{tag}-{i}" for i in range(count)]
    pending = iter(keys)

    async def worker() -> None:
        for key in pending:
            await pub.send(key)

    subscribers = {f"subscribers{i}": pid for i, pid in enumerate(pool.pids)}
    with CpuMeter({**pids, **subscribers}) as cpu:
        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(pub.window)))
        arrivals = await asyncio.to_thread(pool.collect, count)
    _check(arrivals, keys, pool.count)
    elapsed = max(a[1] for a in arrivals.values()) - start
    return {"events_per_s": count / elapsed, "cpu_percent": cpu.percent}


async def burst(pub: Publisher, count: int) -> float:
    """Requests/s of ``count`` sends, the path's window at a time, first send to last
    answer: for a path no subscriber hears (the bare Flask app)."""
    pending = iter(range(count))

    async def worker() -> None:
        for i in pending:
            await pub.send(f"burst-{i}")

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(pub.window)))
    return count / (time.monotonic() - start)


async def answered(pub: Publisher, rate: float, seconds: float) -> list[float]:
    """Send at a fixed rate; ms from each send to its answer."""
    begin = time.monotonic()

    async def timed(key: str) -> float:
        sent = time.monotonic()
        await pub.send(key)
        return (time.monotonic() - sent) * 1000

    tasks = []
    for i in range(int(rate * seconds)):
        pause = begin + i / rate - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        tasks.append(asyncio.ensure_future(timed(f"paced-{i}")))
    return list(await asyncio.gather(*tasks))


async def latency(
    pub: Publisher, pool: SubscriberPool, tag: str, rate: float, seconds: float
) -> list[float]:
    """Send at a fixed rate; ms from the send to the arrival at the (first) subscriber."""
    sent: dict[str, float] = {}
    tasks = []
    begin = time.monotonic()
    for i in range(int(rate * seconds)):
        pause = begin + i / rate - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        key = f"{tag}-{i}"
        sent[key] = time.monotonic()
        tasks.append(asyncio.ensure_future(pub.send(key)))
    await asyncio.gather(*tasks)
    arrivals = await asyncio.to_thread(pool.collect, len(sent))
    _check(arrivals, list(sent), pool.count)
    return [(arrivals[k][0] - t) * 1000 for k, t in sent.items()]


async def fanout(
    pub: Publisher, ws_url: str, topic: str, router_pid: int, n: int, repeats: int
) -> dict[str, Any]:
    """Time from one publish to its arrival at the last of ``n`` WebSocket subscribers,
    and the router's resident memory per subscriber connection."""
    before = tree_rss(router_pid)
    pool = await asyncio.to_thread(SubscriberPool(ws_url, topic, n).start)
    try:
        await asyncio.sleep(0.5)
        per_connection = (tree_rss(router_pid) - before) / n
        times = []
        for j in range(repeats):
            key = f"fan{n}-{j}"
            start = time.monotonic()
            await pub.send(key)
            arrivals = await asyncio.to_thread(pool.collect, 1)
            _check(arrivals, [key], n)
            times.append((arrivals[key][1] - start) * 1000)
            await asyncio.sleep(0.05)
    finally:
        await asyncio.to_thread(pool.close)
    return {
        "subscribers": n,
        "median_ms": round(statistics.median(times), 1),
        "max_ms": round(max(times), 1),
        "first_ms": round(times[0], 1),
        "rss_kb_per_connection": round(per_connection / 1024, 1),
        "raw_ms": times,
    }


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]
