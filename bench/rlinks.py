"""rlinks evaluated on real routers: two Crossbar nodes in a full mesh (tests/support/rlinks.py),
the bridge publishing to node A at a steady rate, a backend subscriber on each node.

Per scenario (steady state; SIGTERM + start of node B while events flow; the same for node
A), it counts for each subscriber what arrived: received, unique, duplicates, in order,
missing (with the send-time window of the missing run, relative to the restart), and how
long the link took to come back. The findings are in the README (Scaling, rlinks).

    python -m bench.rlinks [--rate 100] [--scenario steady|restart-b|restart-a|all]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bridge import EventSender
from tests.support.procs import Bridge, wait_until
from tests.support.rlinks import LinkedNode, bridge_config, mesh, start_all
from tests.support.wamp import Client, Subscriber

TOPIC = "articles"


@dataclass
class Tally:
    """What one subscriber got of the ``sent`` events."""

    node: str
    received: list[int]
    sent: int

    @property
    def unique(self) -> list[int]:
        return list(dict.fromkeys(self.received))

    @property
    def missing(self) -> list[int]:
        return sorted(set(range(self.sent)) - set(self.received))

    @property
    def duplicates(self) -> int:
        return len(self.received) - len(self.unique)

    @property
    def in_order(self) -> bool:
        return self.unique == sorted(self.unique)

    def line(self, send_times: list[float], mark: float | None) -> str:
        text = (
            f"  node {self.node}: sent={self.sent} received={len(self.received)} "
            f"unique={len(self.unique)} duplicates={self.duplicates} "
            f"in_order={self.in_order} missing={len(self.missing)}"
        )
        for first, last in _runs(self.missing):
            window = ""
            if mark is not None:
                window = (
                    f" (sent {send_times[first] - mark:+.2f}s .. {send_times[last] - mark:+.2f}s"
                    " from the stop)"
                )
            text += f"\n    missing {first}..{last}{window}"
        return text


def _runs(values: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for value in values:
        if runs and value == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs


@dataclass
class Stream:
    """Sends ``article.created`` with a growing seq at ``rate`` per second until stopped."""

    sender: EventSender
    rate: float
    send_times: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        seq = 0
        while not self._stop.is_set():
            self.sender.send("article.created", {"seq": seq})
            self.send_times.append(time.monotonic())
            seq += 1
            time.sleep(1 / self.rate)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()


def restart(node: LinkedNode, down: float) -> dict[str, float]:
    """SIGTERM the node, keep it down ``down`` seconds more, start it; the times of each step."""
    stopped_at = time.monotonic()
    node.stop()
    time.sleep(down)
    down_at = time.monotonic()
    node.start()
    return {"stop": stopped_at, "down": down_at, "up": time.monotonic()}


def link_back(b: LinkedNode, before: int, since: float, timeout: float = 90.0) -> float:
    """Seconds from ``since`` until node B's link to A joined again."""
    wait_until(lambda: b.links_ready() > before, timeout, "B's rlink to A back", 0.05)
    return time.monotonic() - since


def beyond_exact_uris(a: LinkedNode, b: LinkedNode, bridge: Bridge) -> None:
    """A prefix subscription and an event for one authid, each on node B, published on A."""
    on_a, on_b = Client(a.backend_url, authid="topics"), Client(b.backend_url, authid="topics")
    try:
        for client in (on_a, on_b):
            client.subscribe("chat.", match="prefix")
            client.subscribe("user.topics")
        time.sleep(1)
        sender = EventSender(bridge.endpoint)
        sender.send("chat.announcement", {"channel": "general", "text": "hi"})
        sender.send("user.notified", {"user": "topics", "text": "for the topics authid"})
        time.sleep(2)
        for node, client in (("A", on_a), ("B", on_b)):
            got = sorted(event.topic for event in client.events)
            print(f"  node {node}: prefix chat. and eligible user.topics received {got}")
    finally:
        on_a.close()
        on_b.close()


def scenario(workdir: Path, name: str, rate: float, down: float) -> None:
    a, b = mesh(workdir / name)
    started = time.monotonic()
    start_all([a, b])
    if name != "early-subscribe":
        wait_until(lambda: a.links_ready() and b.links_ready(), 60, "both links up")
    print(f"\n{name}: nodes up in {time.monotonic() - started:.1f}s")
    subs = {
        "A": Subscriber(a.backend_url, [TOPIC], authid="topics").start(),
        "B": Subscriber(b.backend_url, [TOPIC], authid="topics").start(),
    }
    bridge = Bridge(workdir / name, a, bridge_config(a.backend_url), router_url=a.backend_url)  # type: ignore[arg-type]
    bridge.start()
    stream = Stream(EventSender(bridge.endpoint), rate)
    try:
        time.sleep(1)  # B's forwarding subscription on A follows B's subscriber's asynchronously
        thread = stream.start()
        time.sleep(2)
        mark = None
        if name not in ("steady", "early-subscribe"):
            node = b if name == "restart-b" else a
            links_before = b.links_ready()
            times = restart(node, down)
            mark = times["stop"]
            back = link_back(b, links_before, times["up"])
            subs["B"].wait_subscribed(timeout=30, joins=2 if node is b else 1)
            print(
                f"  node {node.name.upper()} down {times['down'] - times['stop']:.2f}s "
                f"(SIGTERM to exit), start to ready {times['up'] - times['down']:.2f}s, "
                f"B's link to A back {back:.2f}s after the node was ready"
            )
        time.sleep(3)
        stream.stop()
        thread.join(5)
        time.sleep(3)  # the rest in flight
        sent = len(stream.send_times)
        for node_name, sub in subs.items():
            tally = Tally(node_name, [e.args[0]["seq"] for e in sub.snapshot()], sent)
            print(tally.line(stream.send_times, mark))
        stats = bridge.stats()
        print(f"  bridge: published={stats.get('published')} connects={stats.get('connects')}")
        if name == "steady":
            beyond_exact_uris(a, b, bridge)
    finally:
        stream.stop()
        for sub in subs.values():
            sub.close()
        bridge.stop()
        a.stop()
        b.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="events per second")
    parser.add_argument(
        "--scenario",
        choices=["steady", "restart-b", "restart-a", "early-subscribe", "all"],
        default="all",
        help="early-subscribe: subscribe on B while B's link may still be joining A",
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--down", type=float, default=0.0, help="extra seconds a node stays down")
    args = parser.parse_args()
    names = ["steady", "restart-b", "restart-a"] if args.scenario == "all" else [args.scenario]
    workdir = Path(tempfile.mkdtemp(prefix="sandbar-rlinks-"))
    for run in range(args.repeat):
        for name in names:
            scenario(workdir / str(run), name, args.rate, args.down)


if __name__ == "__main__":
    main()
