"""The inspector's live view on the real stack: router, topics service, bridge, gunicorn API
and AutobahnPython clients; a staff session asks ``inspect.*``, taps topics, publishes
through ``POST /inspect/api/publish`` (issue 19, README The inspector)."""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from autobahn.wamp.exception import ApplicationError

from sandbar.peers import Client
from sandbar.testing import ApiClient, Stack
from tests.support.procs import Api, Bridge, Router, Topics, free_port, wait_until
from tests.support.wamp import backend_call

APP = "topics.examples:topics"
TAP_RATE, TAP_BURST = 20, 20
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole stack, its topics service with a small tap bucket and /metrics."""
    workdir = tmp_path_factory.mktemp("inspector-live")
    api_port, metrics_port = free_port(), free_port()
    with contextlib.ExitStack() as running:
        router = running.enter_context(Router(workdir).start())
        topics = Topics(
            workdir,
            router,
            app=APP,
            api_url=f"http://127.0.0.1:{api_port}",
            metrics_port=metrics_port,
        )
        topics.proc.env.update(
            SANDBAR_TOPICS_TAP_RATE=str(TAP_RATE), SANDBAR_TOPICS_TAP_BURST=str(TAP_BURST)
        )
        running.enter_context(topics.start())
        bridge = running.enter_context(Bridge(workdir, router).start())
        api = running.enter_context(Api(workdir, bridge.endpoint, port=api_port).start())
        yield Stack(router, topics, bridge, api, APP)


@pytest.fixture
def browser(stack: Stack) -> Iterator[Any]:
    """``browser("ann", role="staff")`` (signed in) or ``browser()`` (anonymous)."""
    made: list[Client] = []

    def make(user: str | None = None, role: str = "user") -> Client:
        url = stack.router.ws_url
        made.append(
            Client(url, authid=user, ticket=stack.token(user, role)) if user else Client(url)
        )
        return made[-1]

    yield make
    for each in made:
        each.close()


def call(client: Client, uri: str, *args: Any, **kwargs: Any) -> Any:
    return client._thread.call(client.session.call, uri, *args, **kwargs)


def records(staff: Client, count: int, timeout: float = 10.0, **match: Any) -> list[dict[str, Any]]:
    """The tap records ``staff`` got whose fields equal ``match``, once there are ``count``."""

    def found() -> list[dict[str, Any]]:
        got = [e.args[0] for e in list(staff.events) if e.topic == "inspect.tap"]
        return [r for r in got if all(r.get(k) == v for k, v in match.items())]

    wait_until(lambda: len(found()) >= count, timeout, f"{count} tap records like {match}")
    return found()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- inspect.sessions / inspect.topics / inspect.services --------------------------------


def test_staff_sees_other_sessions_with_their_subscriptions(browser):
    room = unique("room")
    bob, cy = browser("bob"), browser("cy")
    bob.subscribe("articles")
    bob.subscribe(f"chat.{room}")
    cy.subscribe(f"chat.{room}")
    staff = browser("ann", role="staff")

    [seen_bob] = call(staff, "inspect.sessions", authid="bob")
    assert seen_bob["session"] == bob.id
    assert (seen_bob["authid"], seen_bob["authrole"]) == ("bob", "user")
    assert seen_bob["subscriptions"] == sorted(["articles", f"chat.{room}"])
    assert seen_bob["transport"]["type"] == "websocket"
    assert seen_bob["transport"]["peer"].startswith("tcp4:127.0.0.1:")
    assert seen_bob["since"] is not None and abs(seen_bob["since"] - time.time()) < 60
    everyone = call(staff, "inspect.sessions")
    by_id = {s["session"]: s for s in everyone}
    assert by_id[cy.id]["subscriptions"] == [f"chat.{room}"]
    assert by_id[staff.id]["authrole"] == "staff"
    assert "backend" in {s["authrole"] for s in everyone}  # bridge, topics: listed too
    assert len(call(staff, "inspect.sessions", limit=1)) == 1
    print("inspect.sessions(authid='bob') ->", seen_bob)


def test_topics_are_counted(browser):
    room = unique("count")
    for user in ("bob", "cy"):
        browser(user).subscribe(f"chat.{room}")
    staff = browser("ann", role="staff")
    listed = call(staff, "inspect.topics")
    assert {"uri": f"chat.{room}", "match": "exact", "subscribers": 2} in listed
    assert [t["uri"] for t in listed] == sorted(t["uri"] for t in listed)
    print("inspect.topics ->", listed)


def test_services_show_the_bridge_the_replicas_and_the_outbox(browser, stack):
    staff = browser("ann", role="staff")
    services = call(staff, "inspect.services")
    assert services["router"]["status"] == "ok" and services["router"]["sessions"] >= 3
    [replica] = services["topics"]
    assert replica["leader"] is True
    bridge = services["bridge"]
    assert bridge["connected"] is True
    assert isinstance(bridge["buffered"], int) and isinstance(bridge["in_flight"], int)
    api = services["api"]
    assert api["url"] == stack.api.url and api["status"] == "ok"
    assert isinstance(api["outbox"]["backlog"], int)
    assert "oldest_age_s" in api["outbox"]
    assert abs(services["at"] - time.time()) < 60
    print("inspect.services ->", services)


def test_services_report_an_api_that_does_not_answer(stack, tmp_path):
    """The answer says what failed instead of failing: here the API, stopped for a moment."""
    staff = Client(stack.router.ws_url, authid="ann", ticket=stack.token("ann", "staff"))
    try:
        stack.api.stop()
        api = call(staff, "inspect.services")["api"]
    finally:
        stack.api.start()
        staff.close()
    assert "error" in api and "healthz" in api["error"], api


# -- the tap ------------------------------------------------------------------------------


def test_the_tap_shows_a_posted_article_with_its_trace_and_seq(browser, stack):
    staff = browser("ann", role="staff")
    staff.subscribe("inspect.tap")
    started = call(staff, "inspect.tap.start", "articles")
    assert started["pattern"] == "articles" and started["match"] == "exact"
    assert (started["rate"], started["burst"]) == (TAP_RATE, TAP_BURST)
    assert "to_authids" in started["caveat"]
    title = unique("tapped")
    writer = ApiClient(stack).sign_in("writer")
    posted = writer.post(
        "/articles", json={"title": title, "body": "b"}, headers={"traceparent": TRACEPARENT}
    )
    assert posted.status_code == 201, posted.text

    [record] = [r for r in records(staff, 1, tap=started["tap"]) if r["payload"]["title"] == title]
    assert record["topic"] == "articles" and record["name"] == "article.created"
    assert TRACE_ID in record["trace"]
    assert isinstance(record["seq"], int) and record["seq"] >= 1
    assert re.fullmatch(r"[0-9a-f]{32}", record["id"]) and record["epoch"]
    assert 0 <= record["age_ms"] < 10_000 and record["dropped"] == 0
    row = writer.get(f"/events?topic=articles&after={record['seq'] - 1}").json()["events"][0]
    assert (row["id"], row["seq"]) == (record["id"], record["seq"])
    assert call(staff, "inspect.tap.stop") == {"stopped": 1}
    print("inspect.tap.start ->", started, "\nrecord ->", record)


def test_a_non_staff_session_cannot_subscribe_to_the_tap(browser):
    for client in (browser("bob"), browser()):
        with pytest.raises(ApplicationError) as refused:
            client.subscribe("inspect.tap")
        assert refused.value.error == "wamp.error.not_authorized"


def test_the_tap_forwards_to_the_staff_session_that_asked_only(browser):
    """Another staff session subscribed to inspect.tap gets none of ann's records."""
    ann, other = browser("ann", role="staff"), browser("dee", role="staff")
    for each in (ann, other):
        each.subscribe("inspect.tap")
    room = unique("only")
    tap = call(ann, "inspect.tap.start", f"chat.{room}")["tap"]
    speaker = browser("bob")
    speaker.subscribe(f"chat.{room}")
    call(speaker, f"chat.{room}", {"text": "hello"})
    [said] = records(ann, 1, tap=tap, name="chat.message")
    assert said["payload"]["text"] == "hello" and said["payload"]["author"] == "bob"
    time.sleep(0.3)
    assert not [e for e in other.events if e.topic == "inspect.tap"]


def test_a_declared_pattern_taps_every_channel_but_not_addressed_events(browser, stack):
    """chat.{channel} taps every room; the handled publish the leader itself makes is seen;
    the welcome (eligible=[session]) and a to_authids notification are not: the caveat."""
    staff = browser("ann", role="staff")
    staff.subscribe("inspect.tap")
    chat = call(staff, "inspect.tap.start", "chat.{channel}")
    assert (chat["uri"], chat["match"]) == ("chat.", "wildcard")
    users = call(staff, "inspect.tap.start", pattern="user.{user_id}")
    room = unique("pattern")
    bob = browser("bob")
    bob.subscribe(f"chat.{room}")
    bob.subscribe("user.bob")
    bob.wait_for(1, name="chat.welcome")
    call(bob, f"chat.{room}", {"text": "via the handler"})
    [message] = records(staff, 1, tap=chat["tap"], topic=f"chat.{room}", name="chat.message")
    assert message["payload"]["text"] == "via the handler"

    sent = (
        ApiClient(stack).sign_in("cy").post("/notifications", json={"user": "bob", "text": "psst"})
    )
    assert sent.status_code == 202, sent.text
    bob.wait_for(1, name="user.notified")
    backend = Client(stack.router.backend_url, authid="bridge")
    try:  # an event to everyone on user.bob: the tap sees this one
        backend.publish("user.bob", {"text": "broadcast"})
    finally:
        backend.close()
    [seen] = records(staff, 1, tap=users["tap"])
    assert seen["payload"] == {"text": "broadcast"}
    names = {r["name"] for r in records(staff, 1, tap=chat["tap"], topic=f"chat.{room}")}
    assert "chat.welcome" not in names
    assert call(staff, "inspect.tap.stop", tap=users["tap"]) == {"stopped": 1}
    assert call(staff, "inspect.tap.stop", tap=users["tap"]) == {"stopped": 0}


def test_overload_drops_and_counts(browser, stack):
    """Faster than the bucket: events are dropped, counted in the next record and in
    sandbar_topics_inspector_tap_dropped; nothing is forwarded beyond the rate."""
    staff = browser("ann", role="staff")
    staff.subscribe("inspect.tap")
    room = unique("flood")
    tap = call(staff, "inspect.tap.start", f"chat.{room}")["tap"]
    before = _dropped_metric(stack)
    backend = Client(stack.router.backend_url, authid="bridge")
    sent = 200
    started = time.monotonic()
    try:
        for n in range(sent):
            backend.publish(f"chat.{room}", {"n": n})
        took = time.monotonic() - started
        time.sleep(1.5)  # the bucket refills: the next one goes through, with the count
        backend.publish(f"chat.{room}", {"n": sent})
    finally:
        backend.close()
    records(staff, 1, tap=tap, payload={"n": sent})  # the last one arrived
    got = records(staff, 1, tap=tap)
    forwarded = len(got)
    dropped = sum(r["dropped"] for r in got)
    assert forwarded + dropped == sent + 1, (forwarded, dropped)
    assert dropped > 0 and got[-1]["dropped"] > 0
    assert forwarded <= TAP_BURST + TAP_RATE * (took + 0.5) + 1
    assert _dropped_metric(stack) - before == dropped
    print(f"overload: {sent + 1} sent in {took:.2f} s, {forwarded} forwarded, {dropped} dropped")


def _dropped_metric(stack: Stack) -> float:
    text = requests.get(stack.topics.metrics_url, timeout=5).text
    found = re.search(r"^sandbar_topics_inspector_tap_dropped_total (\S+)$", text, re.M)
    assert found, "the tap's drop counter is not served"
    return float(found.group(1))


def test_taps_are_bounded_per_session_and_end_when_it_leaves(browser, stack):
    staff = browser("ann", role="staff")
    taps = [call(staff, "inspect.tap.start", unique("chat.bound"))["tap"] for _ in range(4)]
    with pytest.raises(ApplicationError) as refused:
        call(staff, "inspect.tap.start", "articles")
    assert refused.value.error == "sandbar.error.too_many_taps"
    assert "at most 4 taps per session" in refused.value.args[0]
    assert len(set(taps)) == 4
    staff.close()
    again = browser("ann", role="staff")  # the leaver's taps ended: a new session may tap
    wait_until(lambda: _tap_subscriptions(stack) == 0, 10, "the taps' subscriptions gone")
    assert call(again, "inspect.tap.start", "articles")["tap"] > max(taps)


def _tap_subscriptions(stack: Stack) -> int:
    """How many chat.bound-* subscriptions the router still has."""
    listed = backend_call(stack.router.backend_url, "wamp.subscription.list")
    count = 0
    for sub_id in listed["exact"]:
        found = backend_call(stack.router.backend_url, "wamp.subscription.get", sub_id)
        count += str(found["uri"]).startswith("chat.bound-")
    return count


# -- POST /inspect/api/publish, GET /inspect/api/events/<id>, GET /inspect/api/outbox -----


def test_published_test_event_reaches_a_subscriber_and_its_row_is_shown(browser, stack):
    room = unique("lobby")
    listener = browser()
    listener.subscribe(f"chat.{room}")
    staff = ApiClient(stack).sign_in("ann", role="staff")
    answer = staff.post(
        "/inspect/api/publish",
        json={"event": "chat.announcement", "payload": {"channel": room, "text": "hello"}},
    )
    assert answer.status_code == 202, answer.text
    sent = answer.json()
    assert sent["event"] == "chat.announcement" and sent["topic"] == f"chat.{room}"
    assert sent["seq"] == 1
    [event] = listener.wait_for(1, name="chat.announcement")
    assert event.args[0] == {"channel": room, "text": "hello"}
    assert (event.kwargs["id"], event.kwargs["seq"]) == (sent["id"], 1)

    def row() -> dict[str, Any]:
        return dict(staff.get(f"/inspect/api/events/{sent['id']}").json())

    wait_until(lambda: row()["acknowledged"], 10, "the bridge's ack recorded")
    shown = row()
    assert shown["topic"] == f"chat.{room}" and shown["seq"] == 1 and shown["epoch"]
    assert shown["payload"] == {"channel": room, "text": "hello"}
    assert abs(shown["committed_at"] - time.time()) < 60
    missing = staff.get(f"/inspect/api/events/{uuid.uuid4().hex}")
    assert missing.status_code == 404 and "pruned" in missing.json()["error"]["message"]
    outbox = staff.get("/inspect/api/outbox").json()
    assert isinstance(outbox["backlog"], int) and outbox["delivery"] == "reliable"
    print("POST /inspect/api/publish ->", sent, "\nGET /inspect/api/events/<id> ->", shown)
    print("GET /inspect/api/outbox ->", outbox)


def test_publish_checks_the_event_and_its_payload(stack):
    staff = ApiClient(stack).sign_in("ann", role="staff")

    def refused(body: Any) -> dict[str, Any]:
        answer = staff.post("/inspect/api/publish", json=body)
        assert answer.status_code == 400, answer.text
        return dict(answer.json()["error"])

    unknown = refused({"event": "no.such", "payload": {}})
    assert "article.created" in unknown["message"] and unknown["field"] == "event"
    backend = refused({"event": "auth.revoked", "payload": {"user": "bob"}})
    assert backend["field"] == "event"
    misfit = refused({"event": "chat.announcement", "payload": {"channel": "x"}})
    assert misfit["code"] == "schema_mismatch" and misfit["field"] == "payload.text"
    unroutable = refused({"event": "chat.announcement", "payload": {"channel": "a b", "text": "t"}})
    assert unroutable["field"] == "payload"
    assert refused({"event": "chat.announcement", "payload": []})["field"] == "payload"
    assert refused({"event": "x", "payload": {}, "extra": 1})["field"] == "extra"
    nul = refused({"event": "chat.announcement", "payload": {"channel": "a", "text": "\u0000x"}})
    assert "NUL" in nul["message"]


def test_publish_still_sends_with_the_outbox_off(stack, browser, tmp_path):
    """Fire-and-forget: no outbox row, no seq, but the event reaches the subscriber."""
    room = unique("faf")
    listener = browser()
    listener.subscribe(f"chat.{room}")
    with Api(tmp_path, stack.bridge.endpoint, delivery="fire_and_forget").start() as api:
        api.add_user("fay", role="staff")
        headers = {"Authorization": f"Bearer {api.sign_in('fay')}"}
        answer = requests.post(
            f"{api.url}/inspect/api/publish",
            json={"event": "chat.announcement", "payload": {"channel": room, "text": "faf"}},
            headers=headers,
            timeout=10,
        )
        assert answer.status_code == 202, answer.text
        sent = answer.json()
        assert sent["topic"] == f"chat.{room}" and sent["seq"] is None
        [event] = listener.wait_for(1, name="chat.announcement")
        assert event.kwargs["id"] == sent["id"]
        missing = requests.get(
            f"{api.url}/inspect/api/events/{sent['id']}", headers=headers, timeout=10
        )
        assert (
            missing.status_code == 404 and "fire-and-forget" in missing.json()["error"]["message"]
        )
        health = requests.get(f"{api.url}/healthz", timeout=10).json()
        assert health["outbox"] == {
            "backlog": 0,
            "oldest_age_s": None,
            "delivery": "fire_and_forget",
        }


def test_the_outbox_backlog_on_sqlite_and_postgresql(database_url, tmp_path):
    """An API whose bridge is away: the events wait, GET /inspect/api/outbox and /healthz
    count them and age the oldest; GET /inspect/api/events/<id> shows one unacknowledged."""
    nowhere = f"tcp://127.0.0.1:{free_port()}"
    with Api(tmp_path, nowhere, database_url=database_url).start() as api:
        api.add_user("ann", role="staff")
        headers = {"Authorization": f"Bearer {api.sign_in('ann')}"}
        ids = []
        for n in range(3):
            answer = requests.post(
                f"{api.url}/inspect/api/publish",
                json={"event": "chat.announcement", "payload": {"channel": "wait", "text": f"{n}"}},
                headers=headers,
                timeout=10,
            )
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["id"])
        time.sleep(0.2)
        outbox = requests.get(f"{api.url}/inspect/api/outbox", headers=headers, timeout=10).json()
        assert outbox["backlog"] == 3 and 0.2 <= outbox["oldest_age_s"] < 60
        health = requests.get(f"{api.url}/healthz", timeout=10).json()
        assert health["status"] == "ok" and health["outbox"]["backlog"] == 3
        row = requests.get(f"{api.url}/inspect/api/events/{ids[0]}", headers=headers, timeout=10)
        assert row.json()["acknowledged"] is False and row.json()["seq"] == 1
        assert [r["seq"] for r in _rows(api, headers, ids)] == [1, 2, 3]


def _rows(api: Api, headers: dict[str, str], ids: list[str]) -> list[dict[str, Any]]:
    return [
        requests.get(f"{api.url}/inspect/api/events/{i}", headers=headers, timeout=10).json()
        for i in ids
    ]


def test_tap_settings_are_validated():
    from topics.service import TopicsConfig, main

    with pytest.raises(ValueError, match="tap_rate"):
        TopicsConfig(
            router={"url": "rs://127.0.0.1:1", "authid": "t", "ticket": "x" * 32}, tap_rate=0
        )
    with pytest.raises(SystemExit):
        main(["--tap-rate", "fast"])


def test_a_large_payload_is_cut_at_4_kb(browser, stack):
    staff = browser("ann", role="staff")
    staff.subscribe("inspect.tap")
    room = unique("large")
    tap = call(staff, "inspect.tap.start", f"chat.{room}")["tap"]
    backend = Client(stack.router.backend_url, authid="bridge")
    try:
        backend.publish(f"chat.{room}", {"text": "é" * 10_000})
    finally:
        backend.close()
    [record] = records(staff, 1, tap=tap)
    assert record["truncated"] is True
    assert isinstance(record["payload"], str) and record["payload"].startswith('{"text":"é')
    assert len(record["payload"].encode()) <= 4096
