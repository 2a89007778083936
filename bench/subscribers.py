"""Many real WebSocket subscribers (bench/light.py: JSON, anonymous, like a browser) in
child processes of their own, so that receiving does not share a GIL with publishing.

The parent drives the pool over a pipe: ``collect`` waits until a number of events has
arrived and returns, per event key (the payload's ``title``), the first and last arrival
time (``time.monotonic``, one clock for every process on Linux) and how many arrived.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit

from bench.light import LightSubscriber
from sandbar.heap import freeze_startup_heap

#: key -> [first arrival, last arrival, count]
Arrivals = dict[str, list[float]]


class _Tally:
    def __init__(self) -> None:
        self.arrivals: Arrivals = {}
        self.total = 0
        self.dropped = 0  # sessions the router closed (e.g. auto-ping timeout while lagging)
        self.sessions: list[LightSubscriber] = []

    def on_event(self, payload: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        now = time.monotonic()
        self.total += 1
        record = self.arrivals.get(payload["title"])
        if record is None:
            self.arrivals[payload["title"]] = [now, now, 1]
        else:
            record[1] = now
            record[2] += 1


def _dropped(tally: _Tally) -> Callable[[str], None]:
    def count(_why: str) -> None:
        tally.dropped += 1

    return count


async def _connect(url: str, topic: str, tally: _Tally) -> None:
    parts = urlsplit(url)
    host, port = str(parts.hostname), int(parts.port or 80)
    loop = asyncio.get_running_loop()
    _, subscriber = await loop.create_connection(
        lambda: LightSubscriber(host, port, parts.path, topic, tally.on_event, _dropped(tally)),
        host,
        port,
    )
    await asyncio.wait_for(subscriber.ready, 30)
    tally.sessions.append(subscriber)


async def _serve(url: str, topic: str, count: int, pipe: Connection) -> None:
    tally = _Tally()
    for start in range(0, count, 50):  # a few at a time: the authorizer sees each subscribe
        await asyncio.gather(
            *(_connect(url, topic, tally) for _ in range(start, min(count, start + 50)))
        )
    freeze_startup_heap()  # like the services: no long full GC pass mid-measurement
    pipe.send(("ready", count))
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, pipe.recv)
        if command[0] == "stop":
            for session in tally.sessions:
                session.leave()
            await asyncio.sleep(0.2)
            return
        _, expected, timeout = command
        deadline = time.monotonic() + timeout
        while tally.total < expected and not tally.dropped and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.02)  # let a duplicate show itself
        pipe.send((tally.total, tally.dropped, tally.arrivals))
        tally.arrivals, tally.total = {}, 0


def _main(url: str, topic: str, count: int, pipe: Connection) -> None:
    asyncio.run(_serve(url, topic, count, pipe))


class SubscriberPool:
    """``count`` subscribers to ``topic``, spread over child processes (two at most: the
    machine has two cores, and one Python process decodes ~15k events/s)."""

    def __init__(self, url: str, topic: str, count: int, processes: int = 2) -> None:
        self.count = count
        ctx = multiprocessing.get_context("spawn")
        shares = [len(range(i, count, processes)) for i in range(min(processes, count))]
        self._children = []
        for share in shares:
            pipe, child = ctx.Pipe()
            process = ctx.Process(target=_main, args=(url, topic, share, child), daemon=True)
            self._children.append((pipe, process, share))

    @property
    def pids(self) -> list[int]:
        return [int(process.pid or 0) for _, process, _ in self._children]

    def start(self, timeout: float = 120.0) -> SubscriberPool:
        for _, process, _ in self._children:
            process.start()
        for pipe, _, _ in self._children:
            if not pipe.poll(timeout):
                self.close()
                raise TimeoutError(f"{self.count} subscribers not ready within {timeout}s")
            pipe.recv()
        return self

    def collect(self, events: int, timeout: float = 60.0) -> Arrivals:
        """Wait for ``events`` events at every subscriber; fail on any lost or duplicate."""
        for pipe, _, share in self._children:
            pipe.send(("collect", events * share, timeout))
        merged: Arrivals = {}
        total = dropped = 0
        for pipe, _, _ in self._children:
            if not pipe.poll(timeout + 10):
                raise TimeoutError("subscriber pool did not answer")
            got, lost_sessions, arrivals = pipe.recv()
            total += got
            dropped += lost_sessions
            for key, (first, last, n) in arrivals.items():
                seen = merged.get(key)
                merged[key] = (
                    [first, last, n]
                    if seen is None
                    else [min(seen[0], first), max(seen[1], last), seen[2] + n]
                )
        if total != events * self.count:
            raise RuntimeError(
                f"sent {events} events to {self.count} subscribers: expected "
                f"{events * self.count} deliveries, got {total} (lost or duplicated); "
                f"{dropped} subscriber connection(s) dropped by the router"
            )
        return merged

    def close(self) -> None:
        for pipe, process, _ in self._children:
            if process.is_alive():
                pipe.send(("stop",))
        for _, process, _ in self._children:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
