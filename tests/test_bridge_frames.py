"""Bad frames are logged and counted, and the bridge keeps serving the good ones."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from pathlib import Path

import pytest
import yaml
import zmq

from bridge import EventSender, SendError
from bridge.config import load_config
from bridge.envelope import Ack, Envelope
from bridge.server import Bridge as BridgeService
from tests.support.events import article
from tests.support.procs import (
    BIN,
    SECRET,
    SHIPPED_BRIDGE_CONFIG,
    Bridge,
    base_env,
    dealer,
    free_port,
    wait_until,
)


def _raw_push(endpoint: str) -> zmq.Socket[bytes]:
    return dealer(endpoint)  # with the session's CURVE keys


BAD_FRAMES = {
    "not_json": b"\xff{not json",
    "not_object": b"[1, 2, 3]",
    "no_name": json.dumps({"v": 1, "payload": {}}).encode(),
    "bad_payload": json.dumps({"name": "article.created", "payload": [1]}).encode(),
    "bad_version": json.dumps({"v": 9, "name": "article.created", "payload": {}}).encode(),
    "unknown_event": json.dumps({"name": "article.exploded", "payload": {}}).encode(),
    "missing_field": json.dumps({"name": "chat.announcement", "payload": {"text": "hi"}}).encode(),
    "bad_field": json.dumps(
        {"name": "chat.announcement", "payload": {"channel": "a.b", "text": "hi"}}
    ).encode(),
    "bad_reply_to": json.dumps(
        {"name": "article.created", "payload": {}, "ack": True, "reply_to": "\u00e9" * 3}
    ).encode(),
    "too_deep": b"[" * 3000 + b"]" * 3000,  # 6 KB: a RecursionError in json.loads once
    "too_large": json.dumps(
        {"name": "article.created", "payload": {"x": "y" * (1024 * 1024 + 10)}}
    ).encode(),
}


def test_each_kind_of_malformed_frame_is_logged_counted_and_survived(bridge, subscribe):
    subscriber = subscribe("articles")
    sock = _raw_push(bridge.endpoint)
    for frame in BAD_FRAMES.values():
        sock.send(frame)
    EventSender(bridge.endpoint).send("article.created", article("still here"))

    [event] = subscriber.wait_for(1, timeout=5)
    assert event.args[0]["title"] == "still here"
    wait_until(lambda: bridge.stats()["malformed_total"] == len(BAD_FRAMES), 5, "all counted")
    stats = bridge.stats()
    assert stats["malformed"] == {reason: 1 for reason in BAD_FRAMES}
    assert stats["published"] == 1
    log = bridge.proc.output()
    for reason in BAD_FRAMES:
        assert f"dropped malformed frame ({reason})" in log
    assert "no route for event 'article.exploded'" in log
    assert "needs payload field 'channel'" in log
    assert bridge.proc.running()
    sock.close()


def test_sender_refuses_oversized_and_unserialisable_payloads(bridge):
    sender = EventSender(bridge.endpoint, max_frame_bytes=1000)
    with pytest.raises(SendError, match="over the bridge limit of 1000"):
        sender.send("article.created", {"body": "x" * 2000})
    with pytest.raises(SendError, match="not JSON-serialisable"):
        sender.send("article.created", {"when": object()})


def test_template_fields_route_to_the_right_topic_with_retain(bridge, subscribe):
    sender = EventSender(bridge.endpoint)
    sender.send("chat.announcement", {"channel": "lobby", "text": "retained hello"})
    wait_until(lambda: bridge.stats()["published"] == 1, 5, "published")
    # Retained: a subscriber that arrives later still gets the last announcement.
    late = subscribe("chat.lobby", get_retained=True)
    wait_until(
        lambda: any(e.kwargs["name"] == "chat.announcement" for e in late.snapshot()),
        5,
        "the retained announcement",
    )  # the topic's welcome arrives beside it
    [event] = [e for e in late.snapshot() if e.kwargs["name"] == "chat.announcement"]
    assert event.topic == "chat.lobby"
    assert event.args[0]["text"] == "retained hello"


def test_to_authids_route_reaches_only_that_user(bridge, router, subscribe):
    # Backend sessions bypass the authorizer, so only eligible_authid keeps "bridge" out.
    addressed = subscribe("user.topics", url=router.backend_url, authid="topics")
    bystander = subscribe("user.topics", url=router.backend_url, authid="bridge")
    sender = EventSender(bridge.endpoint)
    sender.send("user.notified", {"user": "topics", "text": "for you", "from": "cron"})
    sender.send("user.notified", {"user": "somebody-else", "text": "not for you", "from": "cron"})
    sender.send("user.notified", {"text": "no user field"})  # malformed: the route needs it

    [event] = addressed.wait_for(1, timeout=5)
    assert event.args[0]["text"] == "for you"
    wait_until(lambda: bridge.stats()["published"] == 2, 5, "both addressed events published")
    assert bridge.stats()["malformed"] == {"bad_field": 1}
    assert bystander.snapshot() == []
    assert [e.args[0]["text"] for e in addressed.snapshot()] == ["for you"]


def test_bridge_stops_cleanly_on_sigterm(bridge):
    assert bridge.proc.stop() == 0
    log = bridge.proc.output()
    assert "received SIGTERM, shutting down" in log
    assert "stopped:" in log


def test_a_refused_event_that_asked_for_an_ack_is_answered_so_it_is_not_resent(bridge):
    sock = _raw_push(bridge.endpoint)
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    asked = {"id": "e1", "name": "article.exploded", "payload": {}, "ack": True}
    sock.send(json.dumps(asked).encode())
    ack = Ack.from_bytes(sock.recv())
    assert (ack.id, ack.ok) == ("e1", False)
    assert ack.error is not None and ack.error.startswith("unknown_event: no route")
    sock.send(json.dumps({**asked, "id": "e2", "ack": False}).encode())  # fire-and-forget
    sock.setsockopt(zmq.RCVTIMEO, 1000)
    with pytest.raises(zmq.Again):
        sock.recv()  # no answer for a sender that did not ask
    sock.close()


def test_acks_go_to_the_socket_named_in_reply_to(bridge, subscribe):
    """The API's request threads send; its relay's socket (reply_to) gets the answers."""
    subscriber = subscribe("articles")
    relay = dealer(bridge.endpoint, routing_id=b"outbox-relay-test")
    relay.setsockopt(zmq.RCVTIMEO, 5000)
    sender = _raw_push(bridge.endpoint)
    sender.setsockopt(zmq.RCVTIMEO, 1000)
    event = {"id": "r1", "name": "article.created", "payload": article("t"), "ack": True}
    wait_until(lambda: relay.poll(10, zmq.POLLOUT), 5, "relay connected")
    sender.send(json.dumps({**event, "reply_to": "outbox-relay-test"}).encode())
    sender.send(
        json.dumps({**event, "id": "r2", "name": "nope", "reply_to": "outbox-relay-test"}).encode()
    )
    answers = {Ack.from_bytes(relay.recv()).id for _ in range(2)}
    assert answers == {"r1", "r2"}  # the published one and the refused one
    with pytest.raises(zmq.Again):
        sender.recv()  # nothing went back to the sending socket
    assert subscriber.wait_for(1, timeout=5)[0].args[0] == article("t")
    relay.close()
    sender.close()


def test_a_multipart_message_is_counted_not_fatal(bridge, subscribe):
    subscriber = subscribe("articles")
    sock = _raw_push(bridge.endpoint)
    sock.send_multipart([b'{"name": "article.created"}', b"second part"])
    wait_until(lambda: bridge.stats()["malformed"].get("multipart") == 1, 5, "counted")
    EventSender(bridge.endpoint).send("article.created", article("after"))
    assert subscriber.wait_for(1, timeout=5)[0].args[0] == article("after")
    sock.close()


def _health(backend_url: str) -> subprocess.CompletedProcess[str]:
    """``sandbar health bridge``, the command the containers' healthchecks run."""
    return subprocess.run(
        [str(BIN / "sandbar"), "health", "bridge", "--url", backend_url],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_deeply_nested_frame_is_refused_and_the_intake_lives_on(bridge, router, subscribe):
    """H2: 6 KB of brackets once ended the receive task: no error logged, health still
    ready, nothing published until a restart."""
    subscriber = subscribe("articles")
    sock = _raw_push(bridge.endpoint)
    for depth in (3000, 100_000):
        sock.send(b"[" * depth + b"]" * depth)
    # shallow nesting, and brackets inside strings, are fine
    sock.send(
        json.dumps(
            {"name": "chat.announcement", "payload": {"channel": "lobby", "text": "[[[[[]]]]]"}}
        ).encode()
    )
    wait_until(lambda: bridge.stats()["malformed"].get("too_deep") == 2, 5, "both counted")
    EventSender(bridge.endpoint).send("article.created", article("[" * 3000 + "{" * 3000))
    events = subscriber.wait_for(1, timeout=5)
    assert [e.args[0] for e in events][-1] == article("[" * 3000 + "{" * 3000)
    assert bridge.stats()["intake_running"] is True
    assert "dropped malformed frame (too_deep)" in bridge.proc.output()
    assert _health(router.backend_url).returncode == 0
    sock.close()


def _bridge_config(tmp_path: Path, router_url: str) -> Path:
    config = yaml.safe_load(SHIPPED_BRIDGE_CONFIG.read_text())
    config["zmq"]["bind"] = f"tcp://127.0.0.1:{free_port()}"
    config["router"].update(url=router_url, ticket=SECRET)
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_dead_intake_fails_the_health_check(router, tmp_path):
    """Whatever ends the receive task outside shutdown (here: its socket closed under it),
    the bridge says so and ``sandbar health bridge`` fails, so it gets restarted."""
    service = BridgeService(load_config(_bridge_config(tmp_path, router.backend_url)))
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(service.run(stop),))
    thread.start()
    try:
        wait_until(lambda: _health(router.backend_url).returncode == 0, 20, "bridge ready")
        assert service._socket is not None
        loop.call_soon_threadsafe(service._socket.close)
        wait_until(lambda: service.intake_error is not None, 5, "intake death noticed")
        result = _health(router.backend_url)
        assert result.returncode == 1
        assert "the bridge's intake has stopped" in result.stderr
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(20)
        loop.close()


def test_a_resend_older_than_the_duplicate_window_is_published_again(router, tmp_path, subscribe):
    """``publish.duplicate_window`` bounds the ids kept to drop resends: within it a resend
    is dropped, past it (the id forgotten) it is published again."""
    config = {
        "zmq": {"bind": "${SANDBAR_BRIDGE_BIND}"},
        "router": {"url": router.backend_url, "authid": "bridge", "ticket": SECRET},
        "publish": {"duplicate_window": 1},
        "routes": {"article.created": {"topic": "articles"}},
    }
    bridge = Bridge(tmp_path, router, config=config).start()
    watcher = subscribe("articles")
    sender = EventSender(bridge.endpoint)
    try:
        first = Envelope(name="article.created", payload=article("first"))
        sender.send_envelope(first)
        sender.send_envelope(first)  # within the window: dropped
        sender.send("article.created", article("second"))  # pushes "first" out of it
        wait_until(lambda: len(watcher.snapshot()) >= 2, 10, "first and second delivered")
        sender.send_envelope(first)  # forgotten: published again
        wait_until(lambda: len(watcher.snapshot()) >= 3, 10, "the old resend delivered")
        titles = [event.args[0]["title"] for event in watcher.snapshot()]
        assert titles == ["first", "second", "first"], titles
    finally:
        sender.close()
        bridge.stop()
