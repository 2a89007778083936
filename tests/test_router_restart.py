"""The router goes away mid-stream: the bridge buffers, reconnects and delivers everything in order."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bridge import EventSender, SendError
from tests.support.gate import Gate
from tests.support.procs import Bridge, Router, Topics, wait_until
from tests.support.wamp import Subscriber


def _bridge_config(url: str, **publish: int) -> dict[str, Any]:
    return {
        "zmq": {"bind": "${SANDBAR_BRIDGE_BIND}"},
        "router": {
            "url": url,
            "authid": "bridge",
            "ticket": "${SANDBAR_BACKEND_SECRET}",
            "retry_initial_delay": 0.1,
            "retry_max_delay": 0.5,
        },
        "publish": {"max_in_flight": 16, "buffer_size": 10000, **publish},
        "routes": {"article.created": {"topic": "articles"}},
    }


@dataclass
class GatedStack:
    """Router, a bridge that reaches it only through a gate, and a direct subscriber."""

    router: Router
    topics: Topics
    gate: Gate
    bridge: Bridge
    subscriber: Subscriber

    def restart_router(self, how: str = "SIGTERM", while_down: Any = None) -> None:
        """Restart the router; the bridge may reconnect only once the subscriber is back."""
        if how == "SIGKILL":
            os.killpg(self.router.proc.pid, signal.SIGKILL)
        self.router.stop()
        self.gate.close()
        if while_down is not None:
            while_down()
        self.router.start()
        self.subscriber.wait_subscribed(timeout=20, joins=2)
        self.gate.open()


def _start(tmp_path: Path, **publish: int) -> GatedStack:
    router = Router(tmp_path).start()
    topics = Topics(tmp_path, router).start()
    gate = Gate(router.backend_port)
    url = f"rs://127.0.0.1:{gate.port}"
    bridge = Bridge(tmp_path, router, _bridge_config(url, **publish), router_url=url).start()
    subscriber = Subscriber(router.ws_url, ["articles"]).start()
    return GatedStack(router, topics, gate, bridge, subscriber)


@pytest.fixture
def gated(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[GatedStack]:
    stack = _start(tmp_path, **getattr(request, "param", {}))
    yield stack
    stack.subscriber.close()
    stack.bridge.stop()
    stack.gate.stop()
    stack.topics.stop()
    stack.router.stop()


def _seqs(subscriber: Subscriber, count: int) -> list[int]:
    return [event.args[0]["seq"] for event in subscriber.wait_for(count, timeout=30)]


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_router_restart_while_sending_loses_nothing_and_keeps_order(gated, how):
    sender = EventSender(gated.bridge.endpoint)
    sent: list[int] = []
    restarted = threading.Event()

    def send_stream() -> None:
        # At least 600 events, and 100 more once the router is back, however long the
        # restart takes on a loaded machine (bounded: at most 5000).
        after_restart = 0
        for seq in range(5000):
            if seq >= 600 and after_restart >= 100:
                return
            sender.send("article.created", {"seq": seq})
            sent.append(seq)
            after_restart += restarted.is_set()
            time.sleep(0.008)

    streaming = threading.Thread(target=send_stream)
    streaming.start()
    wait_until(lambda: len(gated.subscriber.snapshot()) >= 50, 10, "first events delivered")
    gated.restart_router(how)
    before_restart = len(sent)
    restarted.set()
    streaming.join(60)
    total = len(sent)
    assert not streaming.is_alive() and total < 5000, "events were sent after the restart"

    # A SIGKILLed router may have acknowledged a publish to the bridge and died before it
    # wrote the EVENT to the subscriber: the bridge rightly does not send it again, and a
    # real subscriber catches it up from GET /events (tests/test_delivery.py proves that).
    # So with SIGKILL a few events sent before the kill may be missing here, never later ones.
    lost_at_kill = 16 if how == "SIGKILL" else 0  # at most the bridge's window
    received = _seqs(gated.subscriber, total - lost_at_kill)
    if lost_at_kill:
        time.sleep(1)  # the rest, if they come
        received = [event.args[0]["seq"] for event in gated.subscriber.snapshot()]
    first_seen = list(dict.fromkeys(received))
    missing = sorted(set(range(total)) - set(first_seen))
    stats = gated.bridge.stats()
    print(
        f"\nrouter restart ({how}): sent={total} received={len(received)} "
        f"unique={len(first_seen)} duplicates={len(received) - len(first_seen)} "
        f"requeued={stats['requeued']} connects={stats['connects']}"
    )
    assert first_seen == sorted(first_seen), "events arrive in the order sent"
    assert len(missing) <= lost_at_kill, f"missing {missing}"
    assert all(seq < before_restart for seq in missing), f"lost after the restart: {missing}"
    assert len(received) - len(first_seen) <= 16, "redelivery is bounded by the window"
    assert stats["connects"] >= 2


@pytest.mark.parametrize("gated", [{"buffer_size": 20}], indirect=True)
def test_full_buffer_pushes_back_to_senders_and_drops_nothing_accepted(gated):
    sender = EventSender(gated.bridge.endpoint, queue_size=10)
    accepted: list[int] = []
    refusal: list[str] = []

    padding = "x" * 20_000  # big frames fill the kernel's TCP buffers quickly too

    def fill_until_refused() -> None:
        for seq in range(5000):
            try:
                sender.send("article.created", {"seq": seq, "padding": padding})
            except SendError as exc:
                refusal.append(str(exc))
                return
            accepted.append(seq)
            time.sleep(0.002)  # let ZeroMQ move frames on to the bridge

    gated.restart_router(while_down=fill_until_refused)

    assert refusal, "a sender learns that the bridge is not accepting more"
    assert "events are already waiting for the bridge" in refusal[0]
    received = _seqs(gated.subscriber, len(accepted))
    print(f"\nbuffer full: accepted={len(accepted)} received={len(received)}")
    assert list(dict.fromkeys(received)) == accepted, "everything accepted arrives, in order"
    stats = gated.bridge.stats()
    assert stats["intake_paused"] >= 1
    assert (
        "buffer full (20 events waiting for the router): pausing intake"
        in gated.bridge.proc.output()
    )
