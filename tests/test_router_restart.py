"""The router goes away mid-stream: the bridge buffers, reconnects and delivers everything in order."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from bridge import EventSender
from tests.support.gate import Gate
from tests.support.procs import Bridge, Router, wait_until
from tests.support.wamp import Subscriber


def _bridge_config(url: str) -> dict[str, object]:
    return {
        "zmq": {"bind": "${SANDBAR_BRIDGE_BIND}"},
        "router": {
            "url": url,
            "authid": "bridge",
            "ticket": "${SANDBAR_BACKEND_SECRET}",
            "retry_initial_delay": 0.1,
            "retry_max_delay": 0.5,
        },
        "publish": {"max_in_flight": 16, "buffer_size": 10000},
        "routes": {"article.created": {"topic": "articles"}},
    }


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_router_restart_while_sending_loses_nothing_and_keeps_order(tmp_path, how):
    router = Router(tmp_path).start()
    gate = Gate(router.backend_port)  # the bridge reaches the router only through the gate
    url = f"rs://127.0.0.1:{gate.port}"
    bridge = Bridge(tmp_path, router, _bridge_config(url), router_url=url).start()
    subscriber = Subscriber(router.ws_url, ["articles"]).start()
    sender = EventSender(bridge.endpoint)
    total, sent = 600, []

    def send_stream() -> None:
        for seq in range(total):
            sender.send("article.created", {"seq": seq})
            sent.append(seq)
            time.sleep(0.008)

    try:
        streaming = threading.Thread(target=send_stream)
        streaming.start()
        wait_until(lambda: len(subscriber.snapshot()) >= 50, 10, "first events delivered")

        if how == "SIGKILL":
            os.killpg(router.proc.pid, signal.SIGKILL)
        router.stop()
        gate.close()  # hold the bridge back until the subscriber is subscribed again
        router.start()
        subscriber.wait_subscribed(timeout=20, joins=2)
        assert len(sent) < total, "the router restart happened while events were being sent"
        gate.open()

        streaming.join(20)
        events = subscriber.wait_for(total, timeout=30)
        received = [event.args[0]["seq"] for event in events]
        first_seen = list(dict.fromkeys(received))
        stats = bridge.stats()
        print(
            f"\nrouter restart ({how}): sent={total} received={len(received)} "
            f"unique={len(first_seen)} duplicates={len(received) - len(first_seen)} "
            f"requeued={stats['requeued']} connects={stats['connects']}"
        )
        assert first_seen == list(range(total)), "every event arrives, in the order sent"
        assert len(received) - len(first_seen) <= 16, "redelivery is bounded by the window"
        assert stats["connects"] >= 2
    finally:
        subscriber.close()
        bridge.stop()
        gate.stop()
        router.stop()
