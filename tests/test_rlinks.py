"""Router-to-router links (rlinks): what holds, on two real Crossbar nodes. NOT a delivery
guarantee, and not a layout Sandbar ships.

Two nodes in a full mesh (tests/support/rlinks.py), the bridge publishing to node A, a
backend subscriber on each node. Asserted here is only what the evaluation found to hold:
steady-state forwarding of an exact topic (every event, in order, once), and forwarding
that resumes, without duplicates, once a restarted node and its link are back. Events
published while node B or the link is down are lost for B's subscribers (the bridge's
acknowledgement comes from A alone); bench/rlinks.py measures that and the README (Scaling, rlinks)
reports it, with the Crossbar issues involved.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bridge import EventSender
from tests.support.procs import Bridge, wait_until
from tests.support.rlinks import LinkedNode, bridge_config, mesh, start_all
from tests.support.wamp import Subscriber

TOPIC = "articles"


@dataclass
class Mesh:
    a: LinkedNode
    b: LinkedNode
    on_a: Subscriber
    on_b: Subscriber
    sender: EventSender

    def forwarding(self, timeout: float = 30.0) -> None:
        """Until A holds two subscriptions on the topic: its own subscriber's and the one
        B's rlink makes there for B's subscriber (forwarding is pull-based)."""
        wait_until(lambda: self.a.subscribers(TOPIC) == 2, timeout, "B's rlink on A", 0.2)

    def send(self, seqs: range) -> None:
        for seq in seqs:
            self.sender.send("article.created", {"seq": seq})
            time.sleep(0.002)


def _seqs(subscriber: Subscriber, count: int) -> list[int]:
    return [event.args[0]["seq"] for event in subscriber.wait_for(count, timeout=20)]


@pytest.fixture
def linked(tmp_path: Path) -> Iterator[Mesh]:
    a, b = mesh(tmp_path)
    start_all([a, b])
    started: list[Any] = [a, b]
    try:
        # Subscribe only once both links have joined: a subscription made on B while B's
        # link is joining A can be mirrored twice (each event then arrives twice at B).
        wait_until(lambda: a.links_ready() and b.links_ready(), 60, "both rlinks up", 0.1)
        on_a = Subscriber(a.backend_url, [TOPIC], authid="topics").start()
        started.append(on_a)
        on_b = Subscriber(b.backend_url, [TOPIC], authid="topics").start()
        started.append(on_b)
        # Bridge types its router as the single-node Router; it only reads .backend_url.
        bridge = Bridge(tmp_path, a, bridge_config(a.backend_url), router_url=a.backend_url)  # type: ignore[arg-type]
        started.append(bridge.start())
        linked = Mesh(a, b, on_a, on_b, EventSender(bridge.endpoint))
        linked.forwarding()
        yield linked
        started.append(linked.on_b)  # a test may have replaced it
    finally:
        for part in reversed(started):
            if isinstance(part, Subscriber):
                part.close()
            else:
                part.stop()


def test_rlink_forwards_every_event_of_an_exact_topic_in_order_once(linked):
    linked.send(range(300))
    assert _seqs(linked.on_a, 300) == list(range(300))
    assert _seqs(linked.on_b, 300) == list(range(300)), "node B gets A's events through the link"
    time.sleep(0.5)
    assert len(linked.on_b.snapshot()) == 300, "no event forwarded twice"


@pytest.mark.parametrize("which", ["a", "b"])
def test_rlink_forwarding_resumes_without_duplicates_after_a_restart(linked, which):
    """Nothing is sent while the node is down: what is asserted is that the link comes back
    by itself and forwards again, once each (Crossbar #2079 fixed re-forwarding after a
    reconnect, #1916 duplicates)."""
    linked.send(range(100))
    assert _seqs(linked.on_b, 100) == list(range(100))

    node = linked.a if which == "a" else linked.b
    links_before = linked.b.links_ready()
    if which == "b":
        linked.on_b.close()  # it would re-subscribe while B's link joins (see the fixture)
    node.stop()
    node.start()
    # the link's back-off: 1 s, growing 1.5x up to 60 s, plus jitter
    wait_until(lambda: linked.b.links_ready() > links_before, 60, "B's rlink back", 0.1)
    if which == "b":
        linked.on_b = Subscriber(linked.b.backend_url, [TOPIC], authid="topics").start()
    else:
        linked.on_a.wait_subscribed(timeout=20, joins=2)
    linked.forwarding()

    linked.send(range(100, 200))
    assert _seqs(linked.on_a, 200) == list(range(200))
    after = range(100, 200) if which == "b" else range(200)
    assert _seqs(linked.on_b, len(after)) == list(after), "forwarding resumed, in order"
    time.sleep(0.5)
    assert len(linked.on_b.snapshot()) == len(after), "no event forwarded twice"
