"""Where the router's processes spend their CPU while they fan events out: py-spy on the
router worker (and each proxy worker) under a fixed publish rate to many subscribers.

    python -m bench.profile_fanout [--subscribers 5000] [--proxies 0] [--deliveries 20000]

Starts the router (with ``--proxies`` proxy workers), the topics service and the light
subscribers of bench/scale.py, publishes acknowledged events at the rate that asks for
``--deliveries`` deliveries/s, and samples each process for ``--seconds`` with
``py-spy record --format raw``. Prints, per process, the CPU it used, the share of samples
by source file (self time) and the hottest functions: what limits the deliveries the
bench-scale table reports. py-spy needs ptrace (root, or kernel.yama.ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.measure import percentile
from bench.publishers import Limit
from bench.scale import Pool, _cpu, _publish, _raise_fd_limit, _router_processes
from tests.support.procs import Router, Topics

#: ``function (path:line)`` in py-spy's raw output
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<path>[^:()]+)(?::\d+)?\)$")
_SITE = ("site-packages/", "lib/python3")


def _where(path: str) -> str:
    """A source file as a package path: ``autobahn/websocket/protocol.py``."""
    for marker in _SITE:
        if marker in path:
            tail = path.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker == "lib/python3" else tail
    return Path(path).name


def summarize(raw: str, top: int = 12) -> tuple[int, Counter[str], Counter[str]]:
    """Samples, self time by file and by function, from py-spy's raw (collapsed) stacks."""
    by_file: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        found = _FRAME.match(leaf)
        where = _where(found["path"]) if found else leaf
        function = f"{found['function']} ({where})" if found else leaf
        by_file[where] += int(count)
        by_function[function] += int(count)
        total += int(count)
    return total, by_file, by_function


async def _load(limit: Limit, rate: float, seconds: float) -> int:
    began, sent, tasks = time.monotonic(), 0, []
    while time.monotonic() < began + seconds:
        pause = began + sent / rate - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        tasks.append(asyncio.ensure_future(_publish(limit, f"p{sent}")))
        sent += 1
    await asyncio.gather(*tasks)
    return sent


def _record(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    argv = [spy, "record", "--format", "raw", "--rate", "200", "--nonblocking", "--full-filenames"]
    argv += ["-d", str(int(seconds)), "-p", str(pid), "-o", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def _run(args: argparse.Namespace, work: Path) -> None:
    router = Router(work, proxies=args.proxies).start()
    topics = Topics(work, router).start()
    limit, pool = Limit(router.backend_url), None
    try:
        await limit.open()
        pool = await asyncio.to_thread(Pool, router.ws_url)
        await asyncio.to_thread(pool.grow, args.subscribers)
        await asyncio.sleep(3)
        procs = {k: p for k, p in _router_processes(router).items() if k != "controller"}
        spies = {
            name: _record(p.pid, args.seconds, work / f"{name}.txt") for name, p in procs.items()
        }
        cpu0, t0 = _cpu(procs), time.monotonic()
        rate = args.deliveries / args.subscribers
        sent = await _load(limit, rate, args.seconds)
        got, dropped, _, latencies = await asyncio.to_thread(pool.collect, sent, 60)
        cpu1, wall = _cpu(procs), time.monotonic() - t0  # publishing and the backlog drained
        latencies = latencies or [float("nan")]
        for spy in spies.values():
            spy.wait(60)
        print(
            f"\n{args.subscribers} subscribers, {args.proxies} proxies, {sent} events asking "
            f"{args.deliveries:.0f} deliveries/s for {args.seconds:g} s: {got} delivered in "
            f"{wall:.1f} s ({got / wall:.0f}/s until the last arrived), p50/p99 "
            f"{percentile(latencies, 50):.0f}/{percentile(latencies, 99):.0f} ms, "
            f"{dropped} connections dropped"
        )
        for name in procs:
            raw = (work / f"{name}.txt").read_text() if (work / f"{name}.txt").exists() else ""
            total, by_file, by_function = summarize(raw)
            used = cpu1[name] - cpu0[name]
            print(
                f"\n## {name}: {100 * used / wall:.0f} % of a core, "
                f"{1e6 * used / max(1, got):.1f} µs of CPU per delivery, {total} samples\n"
            )
            print("| self time in | share |\n|---|---:|")
            for where, n in by_file.most_common(args.top):
                print(f"| {where} | {100 * n / max(1, total):.1f} % |")
            print("\n| hottest functions (self) | share |\n|---|---:|")
            for function, n in by_function.most_common(args.top):
                print(f"| {function} | {100 * n / max(1, total):.1f} % |")
    finally:
        await limit.close()
        if pool is not None:
            await asyncio.to_thread(pool.close)
        topics.stop()
        router.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=5000)
    parser.add_argument("--proxies", type=int, default=0)
    parser.add_argument("--deliveries", type=float, default=20_000.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    _raise_fd_limit()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_run(args, Path(tmp)))


if __name__ == "__main__":
    main()
