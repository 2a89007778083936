"""Capacity of one node: idle WebSocket sessions held, broadcast to all, sustained deliveries.

Ramps real WebSocket subscribers (bench/light.py: anonymous, authorized by the topics
service, pings answered) on ``articles`` in steps, from several child processes and from
several source addresses (127.0.0.2, .3, ...: each address has its own ephemeral ports).
At each step: the connect rate, the resident memory per connection of each router
process (controller, router worker, proxy workers), their idle CPU; then one event to
all (time to the first and the last subscriber, median of several), and a fixed publish
rate that asks for ``--deliveries`` deliveries/s, with publish -> receive latency p50/p99
over every delivery. Each step with 0 and with N proxy workers, in the same run.

    python -m bench.scale [--steps 2000,5000,10000] [--proxies 0,2] [--deliveries 25000]

File descriptors: the bench raises its soft limit to the hard one (the router inherits
it); every connection is a descriptor in the router worker (and one more in a proxy), so
a node holds at most about the hard limit (``ulimit -Hn``) connections per router worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import resource
import statistics
import tempfile
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
from autobahn.wamp.types import PublishOptions

from bench.light import LightSubscriber
from bench.measure import percentile
from bench.publishers import TOPIC, Limit
from bench.report import RESULTS
from sandbar.heap import freeze_startup_heap
from tests.support.procs import Router, Topics

CHILDREN = 3
#: the issue's targets for this 2-core machine
TARGETS = {
    "connections": 50_000,
    "deliveries_per_s": 25_000,
    "p99_ms": 200,
    "last_ms": 2000,
    "kb_per_connection": 20,
}


# -- the subscribers' side (child processes) -------------------------------------------


class _Held:
    def __init__(self, url: str, sources: list[str]) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = str(parts.hostname), int(parts.port or 80), parts.path
        self.sources = sources
        self.sessions: list[LightSubscriber] = []
        self.dropped = 0
        #: (what the bench was doing, why the connection ended) -> how many
        self.drops: Counter[tuple[str, str]] = Counter()
        self.phase = "connecting"
        self.arrivals: dict[str, list[float]] = {}  # key -> [first, last, count]
        self.latencies: list[float] = []
        self.total = 0

    def on_event(self, payload: dict[str, Any], _kwargs: dict[str, Any]) -> None:
        now = time.monotonic()
        self.total += 1
        self.latencies.append((now - payload["sent"]) * 1000)
        seen = self.arrivals.get(payload["title"])
        if seen is None:
            self.arrivals[payload["title"]] = [now, now, 1]
        else:
            seen[1] = now
            seen[2] += 1

    def _dropped(self, why: str) -> None:
        self.dropped += 1
        self.drops[self.phase, why] += 1

    async def connect_one(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        _, session = await loop.create_connection(
            lambda: LightSubscriber(
                self.host, self.port, self.path, TOPIC, self.on_event, self._dropped
            ),
            self.host,
            self.port,
            local_addr=(self.sources[index % len(self.sources)], 0),
        )
        await asyncio.wait_for(session.ready, 60)
        self.sessions.append(session)

    async def grow(self, count: int) -> None:
        self.phase = f"connecting to {count}"
        while len(self.sessions) < count:
            batch = range(len(self.sessions), min(count, len(self.sessions) + 100))
            await asyncio.gather(*(self.connect_one(i) for i in batch))

    async def collect(self, expected: int, timeout: float) -> tuple[Any, ...]:
        self.phase = "receiving"
        deadline = time.monotonic() + timeout
        while self.total < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        result = (self.total, self.dropped, self.arrivals, self.latencies, dict(self.drops))
        self.arrivals, self.latencies, self.total = {}, [], 0
        self.phase = "idle"
        return result


async def _child_main(url: str, sources: list[str], pipe: Connection) -> None:
    held = _Held(url, sources)
    loop = asyncio.get_running_loop()
    pipe.send("ready")
    while True:
        command = await loop.run_in_executor(None, pipe.recv)
        if command[0] == "grow":
            began = time.monotonic()
            await held.grow(command[1])
            held.phase = "idle"
            freeze_startup_heap()
            pipe.send(time.monotonic() - began)
        elif command[0] == "collect":
            pipe.send(await held.collect(command[1] * len(held.sessions), command[2]))
        else:
            for session in held.sessions:
                session.leave()
            await asyncio.sleep(1.0)
            return


def _child(url: str, sources: list[str], pipe: Connection) -> None:
    _raise_fd_limit()
    asyncio.run(_child_main(url, sources, pipe))


# -- the measuring side ----------------------------------------------------------------


def _raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return int(hard)


class Pool:
    """The child processes and the connections they hold."""

    def __init__(self, url: str, children: int = CHILDREN) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.children = []
        for i in range(children):
            sources = [f"127.0.0.{2 + i * 4 + k}" for k in range(4)]
            pipe, theirs = ctx.Pipe()
            process = ctx.Process(target=_child, args=(url, sources, theirs), daemon=True)
            process.start()
            self.children.append((pipe, process))
        for pipe, _ in self.children:
            pipe.recv()
        self.count = 0
        self.drops: Counter[tuple[str, str]] = Counter()

    def why_dropped(self) -> str:
        """The connections the other side ended, by what the bench was doing and why."""
        return "; ".join(
            f"{n} while {phase}: {why}" for (phase, why), n in self.drops.most_common(4)
        )

    @property
    def pids(self) -> list[int]:
        return [int(p.pid or 0) for _, p in self.children]

    def grow(self, total: int) -> float:
        """Connect up to ``total`` in all; seconds it took."""
        shares = [len(range(i, total, len(self.children))) for i in range(len(self.children))]
        for (pipe, _), share in zip(self.children, shares, strict=True):
            pipe.send(("grow", share))
        took = max(pipe.recv() for pipe, _ in self.children)
        self.count = total
        return float(took)

    def collect(
        self, events: int, timeout: float
    ) -> tuple[int, int, dict[str, list[float]], list[float]]:
        for pipe, _ in self.children:
            pipe.send(("collect", events, timeout))
        total = dropped = 0
        drops: Counter[tuple[str, str]] = Counter()
        arrivals: dict[str, list[float]] = {}
        latencies: list[float] = []
        for pipe, _ in self.children:
            if not pipe.poll(timeout + 30):
                raise TimeoutError("the subscribers did not answer")
            got, lost, seen, lat, child_drops = pipe.recv()
            total, dropped = total + got, dropped + lost
            drops.update(child_drops)
            latencies += lat
            for key, (first, last, n) in seen.items():
                mine = arrivals.setdefault(key, [first, last, 0])
                mine[0], mine[1], mine[2] = min(mine[0], first), max(mine[1], last), mine[2] + n
        self.drops = drops  # since the pool started: when and why connections ended
        return total, dropped, arrivals, latencies

    def close(self) -> None:
        for pipe, process in self.children:
            if process.is_alive():
                with contextlib.suppress(OSError):  # it died since: nothing to tell it
                    pipe.send(("stop",))
        for _, process in self.children:
            process.join(30)
            if process.is_alive():
                process.kill()


def _router_processes(router: Router) -> dict[str, psutil.Process]:
    root = psutil.Process(router.proc.pid)
    procs = {"controller": root}
    for child in root.children(recursive=True):
        cmdline = " ".join(child.cmdline())
        kind = "proxy" if "proxy" in cmdline.lower() else "router"
        procs[f"{kind}-{child.pid}"] = child
    return procs


def _cpu(procs: dict[str, psutil.Process]) -> dict[str, float]:
    return {name: sum(p.cpu_times()[:2]) for name, p in procs.items()}


async def _publish(limit: Limit, key: str) -> float:
    assert limit.session is not None
    sent = time.monotonic()
    await limit.session.publish(
        TOPIC, {"title": key, "sent": sent}, options=PublishOptions(acknowledge=True)
    )
    return sent


async def _broadcasts(limit: Limit, pool: Pool, repeats: int) -> dict[str, float]:
    first, last = [], []
    for j in range(repeats):
        sent = await _publish(limit, f"b{pool.count}-{j}")
        total, dropped, arrivals, _ = await asyncio.to_thread(pool.collect, 1, 60)
        if total != pool.count or dropped:
            raise RuntimeError(
                f"broadcast reached {total} of {pool.count} ({dropped} dropped: "
                f"{pool.why_dropped()})"
            )
        [(a, b, _)] = arrivals.values()
        first.append((a - sent) * 1000)
        last.append((b - sent) * 1000)
        await asyncio.sleep(0.5)
    return {"first_ms": statistics.median(first), "last_ms": statistics.median(last)}


async def _sustained(limit: Limit, pool: Pool, deliveries: float, seconds: float) -> dict[str, Any]:
    rate = deliveries / pool.count
    events = max(2, int(rate * seconds))
    began = time.monotonic()
    tasks = []
    for i in range(events):
        pause = began + i / rate - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        tasks.append(asyncio.ensure_future(_publish(limit, f"s{pool.count}-{i}")))
    await asyncio.gather(*tasks)
    total, dropped, arrivals, latencies = await asyncio.to_thread(
        pool.collect, events, seconds + 60
    )
    end = max(b for _, b, _ in arrivals.values()) if arrivals else time.monotonic()
    return {
        "asked_per_s": round(deliveries),
        "deliveries_per_s": round(total / (end - began)),
        "complete": total == events * pool.count and not dropped,
        "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 99), 1) if latencies else None,
    }


async def _step(
    router: Router,
    limit: Limit,
    pool: Pool,
    count: int,
    args: argparse.Namespace,
    base_rss: dict[str, int],
) -> dict[str, Any]:
    before = pool.count
    took = await asyncio.to_thread(pool.grow, count)
    await asyncio.sleep(3)
    procs = _router_processes(router)
    rss = {name: p.memory_info().rss for name, p in procs.items()}
    kb_each = {name: (rss[name] - base_rss.get(name, rss[name])) / count / 1024 for name in rss}
    cpu0, t0 = _cpu(procs), time.monotonic()
    await asyncio.sleep(5)
    cpu1, wall = _cpu(procs), time.monotonic() - t0
    idle = {name: round(100 * (cpu1[name] - cpu0[name]) / wall, 1) for name in procs}
    row = {
        "connections": count,
        "connect_per_s": round((count - before) / took),
        "kb_per_connection": {k: round(v, 1) for k, v in kb_each.items()},
        "kb_per_connection_node": round(sum(kb_each.values()), 1),
        "idle_cpu_percent": idle,
        "broadcast": await _broadcasts(limit, pool, args.repeats),
        "sustained": await _sustained(limit, pool, args.deliveries, args.seconds),
    }
    print(f"  {count} connections: {json.dumps(row)}", flush=True)
    return row


async def _layout(work: Path, proxies: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    router = Router(work, proxies=proxies).start()
    topics = Topics(work, router).start()
    pool = None
    limit = Limit(router.backend_url)
    try:
        await limit.open()
        await asyncio.sleep(2)
        base_rss = {name: p.memory_info().rss for name, p in _router_processes(router).items()}
        pool = await asyncio.to_thread(Pool, router.ws_url)
        rows = []
        for count in args.steps:
            try:
                rows.append(
                    {"proxies": proxies, **await _step(router, limit, pool, count, args, base_rss)}
                )
            except (OSError, TimeoutError, RuntimeError) as exc:
                print(f"  {count} connections with {proxies} proxies: stopped: {exc}")
                rows.append({"proxies": proxies, "connections": count, "failed": str(exc)})
                break
        return rows
    finally:
        try:
            await limit.close()
            if pool is not None:
                await asyncio.to_thread(pool.close)
        finally:  # a failed step can leave the children dead: the stack still stops
            topics.stop()
            router.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--steps", default="2000,5000,10000,18000", type=lambda v: [int(x) for x in v.split(",")]
    )
    parser.add_argument("--proxies", default="0", type=lambda v: [int(x) for x in v.split(",")])
    parser.add_argument("--deliveries", type=float, default=25_000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    hard = _raise_fd_limit()
    print(f"file descriptors: {hard} per process (the hard limit: `ulimit -Hn`)")
    too_many = [n for n in args.steps if n > hard - 500]
    if too_many:
        print(
            f"steps {too_many} need more descriptors than one router worker may open here "
            f"({hard}): skipped; raise the hard limit (e.g. LimitNOFILE in systemd) first"
        )
        args.steps = [n for n in args.steps if n not in too_many]
    began = time.monotonic()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for proxies in args.proxies:
            work = Path(tmp) / f"proxies-{proxies}"
            work.mkdir()
            rows += asyncio.run(_layout(work, proxies, args))
    _report(rows, args, hard, time.monotonic() - began)


def _report(rows: list[dict[str, Any]], args: argparse.Namespace, hard: int, took: float) -> None:
    print(
        f"\nOne node, {args.deliveries:.0f} deliveries/s asked at each step; broadcast: "
        f"median of {args.repeats}\n"
    )
    print(
        "| proxies | connections | connect/s | KB per connection (node) | idle CPU % "
        "| broadcast first / last ms | deliveries/s | p50 / p99 ms |"
    )
    print("|---:|---:|---:|---:|---|---:|---:|---:|")
    for r in rows:
        if "failed" in r:
            print(
                f"| {r['proxies']} | {r['connections']} | failed: {r['failed'][:300]} | | | | | |"
            )
            continue
        idle = "/".join(f"{v:g}" for v in r["idle_cpu_percent"].values())
        b, s = r["broadcast"], r["sustained"]
        print(
            f"| {r['proxies']} | {r['connections']} | {r['connect_per_s']} | "
            f"{r['kb_per_connection_node']} | {idle} | {b['first_ms']:.0f} / "
            f"{b['last_ms']:.0f} | {s['deliveries_per_s']} | {s['p50_ms']} / {s['p99_ms']} |"
        )
    done = [r for r in rows if "failed" not in r]
    top = max((r["connections"] for r in done), default=0)
    print()
    print(
        f"{'PASS' if top >= TARGETS['connections'] else 'MISS'}  hold "
        f"{TARGETS['connections']} connections on one node: {top} held "
        f"(file descriptor hard limit here: {hard})"
    )
    for r in done:
        s, b = r["sustained"], r["broadcast"]
        tag = f"{r['connections']} connections, {r['proxies']} proxies"
        ok = (
            s["complete"]
            and s["deliveries_per_s"] >= TARGETS["deliveries_per_s"]
            and (s["p99_ms"] or 1e9) <= TARGETS["p99_ms"]
        )
        print(
            f"{'PASS' if ok else 'MISS'}  >= {TARGETS['deliveries_per_s']} deliveries/s at p99 "
            f"<= {TARGETS['p99_ms']} ms ({tag}): {s['deliveries_per_s']}/s, p99 {s['p99_ms']}"
        )
        ok = b["last_ms"] <= TARGETS["last_ms"]
        print(
            f"{'PASS' if ok else 'MISS'}  broadcast reaches the last in <= "
            f"{TARGETS['last_ms']} ms ({tag}): {b['last_ms']:.0f} ms"
        )
        ok = r["kb_per_connection_node"] <= TARGETS["kb_per_connection"]
        print(
            f"{'PASS' if ok else 'MISS'}  <= {TARGETS['kb_per_connection']} KB per connection "
            f"({tag}): {r['kb_per_connection_node']} KB"
        )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "scale.json"
    out.write_text(
        json.dumps(
            {"settings": vars(args), "fd_hard_limit": hard, "rows": rows, "took_s": round(took)},
            indent=1,
        )
    )
    print(f"\n(run took {took:.0f} s; data: {out})")


if __name__ == "__main__":
    main()
