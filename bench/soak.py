"""Long-running memory and delivery: a stack under steady load for minutes, with churn.

1000 WebSocket subscribers (bench/light.py, in two child processes) stay on ``articles``
while the REST path posts 20 events/s (20k deliveries/s: one router worker delivers
~30k/s on this 2-core machine, so 1000 subscribers of one topic at 200 events/s, 200k
deliveries/s, would measure a backlog, not a leak; ``--rate 200 --subscribers 100`` soaks
the REST path at 200/s); every minute ~3 % of them disconnect, come back a
moment later and catch up over ``GET /events`` from the last seq they hold, as a browser
page does. At the end every subscriber must hold every event exactly once, in order
(catch-up included), and each service process's resident memory slope over the second
half of the run is reported against the target (under 1 MB per 10 minutes).

    python -m bench.soak [--minutes 10] [--subscribers 1000] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import resource
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import yaml

from bench.light import LightSubscriber
from bench.publishers import TOPIC, Rest
from bench.report import RESULTS
from sandbar.heap import freeze_startup_heap
from tests.support.procs import SHIPPED_BRIDGE_CONFIG, Api, Bridge, Router, Topics

#: MB per 10 minutes: the target for each service process's RSS slope
SLOPE_TARGET_MB = 1.0
SAMPLE_SECONDS = 5.0
#: attempts at one reconnect or catch-up before the run fails
RETRIES = 6


class Follower:
    """One subscriber's view of the topic: what it holds, in order, once each."""

    def __init__(self) -> None:
        self.last = 0  # every seq up to here is held
        self.held: set[int] = set()  # arrived ahead of a gap
        self.live = self.fetched = self.duplicates = self.reconnects = 0
        self.session: LightSubscriber | None = None

    def offer(self, seq: int) -> bool:
        if seq <= self.last or seq in self.held:
            self.duplicates += 1
            return False
        self.held.add(seq)
        while self.last + 1 in self.held:
            self.held.remove(self.last + 1)
            self.last += 1
        return True

    def on_event(self, _payload: Any, kwargs: dict[str, Any]) -> None:
        if self.offer(int(kwargs["seq"])):
            self.live += 1


class _Child:
    """The subscribers of one child process, with their churn and catch-up."""

    def __init__(self, ws_url: str, api_url: str, count: int) -> None:
        self.ws_url, self.api_url = ws_url, api_url
        self.followers = [Follower() for _ in range(count)]
        self.dropped = 0
        #: reconnects and catch-ups that failed once and were tried again
        self.retries = 0
        self.stopping = False

    async def connect(self, follower: Follower) -> None:
        parts = urlsplit(self.ws_url)
        host, port = str(parts.hostname), int(parts.port or 80)

        def dropped(_why: str) -> None:
            self.dropped += 1

        _, session = await asyncio.get_running_loop().create_connection(
            lambda: LightSubscriber(host, port, parts.path, TOPIC, follower.on_event, dropped),
            host,
            port,
        )
        await asyncio.wait_for(session.ready, 30)
        follower.session = session

    async def catch_up(self, follower: Follower) -> None:
        while True:
            url = f"{self.api_url}/events?topic={TOPIC}&after={follower.last}&limit=500"
            page = await asyncio.to_thread(_get_json, url)
            for event in page["events"]:
                if follower.offer(int(event["seq"])):
                    follower.fetched += 1
            if not page["more"]:
                return

    async def churn(self, share: float) -> None:
        """Once a minute, ``share`` of the subscribers leave and come back (spread over
        the minute), then catch up from the last seq they hold."""
        while not self.stopping:
            await asyncio.sleep(60 * random.uniform(0.8, 1.2) / max(1, share * len(self.followers)))
            follower = random.choice(self.followers)
            if follower.session is None:
                continue
            session, follower.session = follower.session, None
            session.leave()
            await asyncio.sleep(random.uniform(0.2, 2.0))
            await self._retried(self.connect, follower)
            follower.reconnects += 1
            await self._retried(self.catch_up, follower)

    async def _retried(
        self, step: Callable[[Follower], Awaitable[None]], follower: Follower
    ) -> None:
        """A reconnect or catch-up, tried again until it works: a loaded router can take
        longer than one attempt's 30 s, and that is a figure to report, not a reason to end
        the run (the catch-up fills what the subscriber missed meanwhile)."""
        for attempt in range(1, RETRIES + 1):
            try:
                await step(follower)
                return
            except (OSError, TimeoutError, ValueError) as failed:  # refused, timed out, bad page
                self.retries += 1
                if attempt == RETRIES:
                    raise RuntimeError(
                        f"{step.__name__} failed {RETRIES} times: {failed}"
                    ) from None
                await asyncio.sleep(min(30.0, 2.0**attempt))

    async def settle(self, total: int, timeout: float) -> dict[str, Any]:
        """Catch every subscriber up to ``total`` (a last page for those behind), then report."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            behind = [f for f in self.followers if f.last < total]
            if not behind:
                break
            await asyncio.sleep(1.0)
            for follower in behind[:50]:
                await self.catch_up(follower)
        return {
            "subscribers": len(self.followers),
            "complete": sum(f.last == total and not f.held for f in self.followers),
            "missing": sum(max(0, total - f.last) for f in self.followers),
            "live": sum(f.live for f in self.followers),
            "fetched": sum(f.fetched for f in self.followers),
            "duplicates_dropped": sum(f.duplicates for f in self.followers),
            "reconnects": sum(f.reconnects for f in self.followers),
            "dropped_by_router": self.dropped,
            "retries": self.retries,
        }


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        document: dict[str, Any] = json.load(response)
        return document


async def _child_main(
    ws_url: str, api_url: str, count: int, share: float, pipe: Connection
) -> None:
    child = _Child(ws_url, api_url, count)
    for start in range(0, count, 50):
        await asyncio.gather(*(child.connect(f) for f in child.followers[start : start + 50]))
    freeze_startup_heap()
    pipe.send("ready")
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, pipe.recv)  # "go"
    churn = asyncio.ensure_future(child.churn(share))
    total, timeout = await loop.run_in_executor(None, pipe.recv)  # the posting ended
    child.stopping = True  # a reconnect under way ends with its catch-up
    await asyncio.wait_for(churn, 90)
    pipe.send(await child.settle(total, timeout))
    for follower in child.followers:
        if follower.session is not None:
            follower.session.leave()
    await asyncio.sleep(0.5)


def _child(ws_url: str, api_url: str, count: int, share: float, pipe: Connection) -> None:
    asyncio.run(_child_main(ws_url, api_url, count, share, pipe))


def _raise_fd_limit(wanted: int) -> int:
    """Each subscriber is a socket at both ends: raise the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        soft = min(hard, wanted) if hard != resource.RLIM_INFINITY else wanted
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def _processes(services: dict[str, int]) -> dict[str, psutil.Process]:
    """Every process of every service (the router's controller and workers, gunicorn's
    master and workers), named ``service/pid:name``."""
    found = {}
    for service, pid in services.items():
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            found[f"{service}/{proc.pid}:{proc.name()}"] = proc
    return found


def _slope_mb_per_10min(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS over the second half of the run."""
    half = samples[len(samples) // 2 :]
    if len(half) < 3:
        return float("nan")
    times = [t for t, _ in half]
    rss = [r / 1e6 for _, r in half]
    mean_t, mean_r = statistics.fmean(times), statistics.fmean(rss)
    num = sum((t - mean_t) * (r - mean_r) for t, r in zip(times, rss, strict=True))
    den = sum((t - mean_t) ** 2 for t in times)
    return num / den * 600 if den else float("nan")


async def _post(
    api: Api,
    rate: float,
    seconds: float,
    procs: dict[str, psutil.Process],
    samples: dict[str, list[tuple[float, int]]],
) -> int:
    """POST at ``rate`` for ``seconds`` (8 connections at most in flight); sample RSS."""
    rest = Rest(api.port, api.auth)
    await rest.open()
    window = asyncio.Semaphore(rest.window)
    sent = failed = 0
    begin = next_sample = time.monotonic()

    async def one(i: int) -> None:
        nonlocal failed
        try:
            await rest.send(f"soak-{i}")
        except Exception:
            failed += 1
        finally:
            window.release()

    tasks = []
    while (now := time.monotonic()) < begin + seconds:
        if now >= next_sample:
            next_sample += SAMPLE_SECONDS
            for name, proc in procs.items():
                samples.setdefault(name, []).append((now - begin, proc.memory_info().rss))
        pause = begin + sent / rate - now
        if pause > 0:
            await asyncio.sleep(pause)
        await window.acquire()
        tasks.append(asyncio.ensure_future(one(sent)))
        sent += 1
    await asyncio.gather(*tasks)
    await rest.close()
    if failed:
        raise RuntimeError(f"{failed} of {sent} POSTs failed: the API refused the soak's load")
    return sent


def _bridge_config(args: argparse.Namespace) -> dict[str, Any]:
    """The shipped bridge config with the soak's bounds for the bridge's two memories of
    published events: a slope read while a bounded cache still fills is no leak."""
    config: dict[str, Any] = yaml.safe_load(SHIPPED_BRIDGE_CONFIG.read_text())
    config.setdefault("publish", {})["duplicate_window"] = args.duplicate_window
    config.setdefault("inspect", {})["published_records"] = args.published_records
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="POSTs per second")
    parser.add_argument("--churn", type=float, default=0.03, help="share reconnecting a minute")
    parser.add_argument(
        "--duplicate-window",
        type=int,
        help="the bridge's publish.duplicate_window (default: a quarter of the run's events, "
        "so that the bounded window is full before the second half, where slopes are read)",
    )
    parser.add_argument(
        "--published-records",
        type=int,
        help="the bridge's inspect.published_records (default: a quarter of the run's events, "
        "for the same reason)",
    )
    args = parser.parse_args()
    quarter = max(1000, int(args.rate * args.minutes * 60 / 4))  # events in a quarter run
    args.duplicate_window = args.duplicate_window or quarter
    args.published_records = args.published_records or quarter
    limit = _raise_fd_limit(4 * args.subscribers + 1024)
    print(f"file descriptor limit {limit} (raised for {args.subscribers} subscribers)")
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        router = Router(work).start()
        topics = Topics(work, router).start()
        bridge = Bridge(work, router, config=_bridge_config(args)).start()
        api = Api(work, bridge.endpoint).start()
        ctx = multiprocessing.get_context("spawn")
        children: list[tuple[Connection, Any]] = []
        try:
            assert api.auth
            for share in (args.subscribers // 2, args.subscribers - args.subscribers // 2):
                pipe, theirs = ctx.Pipe()
                proc = ctx.Process(
                    target=_child, args=(router.ws_url, api.url, share, args.churn, theirs)
                )
                proc.start()
                children.append((pipe, proc))
            for pipe, _ in children:
                if not pipe.poll(180):
                    raise TimeoutError("subscribers not connected within 180 s")
                pipe.recv()
            services = {
                "router": router.proc.pid,
                "topics": topics.proc.pid,
                "bridge": bridge.proc.pid,
                "api": api.proc.pid,
            }
            procs = _processes(services)
            print(
                f"{args.subscribers} subscribers up; posting {args.rate:.0f}/s for "
                f"{args.minutes:g} min",
                flush=True,
            )
            for pipe, _ in children:
                pipe.send("go")
            samples: dict[str, list[tuple[float, int]]] = {}
            total = asyncio.run(_post(api, args.rate, args.minutes * 60, procs, samples))
            for pipe, _ in children:
                pipe.send((total, 120.0))
            reports = [pipe.recv() for pipe, _ in children if pipe.poll(180)]
        finally:
            for _, proc in children:
                proc.join(10)
                if proc.is_alive():
                    proc.kill()
            for service in (api, bridge, topics, router):
                service.stop()
    _report(args, total, reports, samples, time.monotonic() - began)


def _report(
    args: argparse.Namespace,
    total: int,
    reports: list[dict[str, Any]],
    samples: dict[str, list[tuple[float, int]]],
    took: float,
) -> None:
    merged = {key: sum(r[key] for r in reports) for key in reports[0]} if reports else {}
    print(
        f"\nSoak: {args.subscribers} subscribers, {args.churn:.0%} reconnecting a minute, "
        f"{total} events through POST /articles at {args.rate:.0f}/s for {args.minutes:g} min; "
        f"the bridge's duplicate window {args.duplicate_window} ids and published records "
        f"{args.published_records}\n"
    )
    print(
        "| subscribers complete | missing deliveries | live | caught up | duplicates dropped "
        "| reconnects | retried | dropped by the router |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {merged.get('complete', 0)} of {args.subscribers} | {merged.get('missing', '?')} | "
        f"{merged.get('live', 0)} | {merged.get('fetched', 0)} | "
        f"{merged.get('duplicates_dropped', 0)} | {merged.get('reconnects', 0)} | "
        f"{merged.get('retries', 0)} | {merged.get('dropped_by_router', 0)} |"
    )
    print("\n| process | RSS start MB | RSS end MB | slope, 2nd half, MB / 10 min | verdict |")
    print("|---|---:|---:|---:|---|")
    verdicts = []
    slopes = {}
    for name, series in samples.items():
        slope = _slope_mb_per_10min(series)
        slopes[name] = slope
        ok = "PASS" if slope < SLOPE_TARGET_MB else "MISS"
        verdicts.append(ok == "PASS")
        print(
            f"| {name} | {series[0][1] / 1e6:.1f} | {series[-1][1] / 1e6:.1f} | "
            f"{slope:+.2f} | {ok} |"
        )
    delivered = merged.get("complete") == args.subscribers and merged.get("missing") == 0
    print(
        f"\n{'PASS' if delivered else 'MISS'}  every event reached every subscriber once, "
        "in order (catch-up included)"
    )
    print(
        f"{'PASS' if all(verdicts) else 'MISS'}  every process's RSS slope < "
        f"{SLOPE_TARGET_MB:g} MB / 10 min over the second half"
    )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "soak.json"
    out.write_text(
        json.dumps(
            {
                "settings": vars(args),
                "events": total,
                "delivery": merged,
                "rss_slope_mb_per_10min": slopes,
                "samples": samples,
                "took_s": round(took),
            },
            indent=1,
        )
    )
    print(f"\n(run took {took:.0f} s; data: {out})")
    if not delivered:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
