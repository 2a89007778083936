"""The why-not pieces without a stack: the pure answer, the journal's bounds, WAMP
matching, the bridge's record of what it published, and their config keys."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from autobahn.wamp.exception import ApplicationError
from pydantic import ValidationError

from bridge.config import InspectSettings
from bridge.envelope import Envelope
from bridge.published import Published
from bridge.routes import Publication
from topics.inspect_why import Evidence, answer
from topics.journal import (
    DecisionLog,
    DecisionRecord,
    Journal,
    SessionSpan,
    Spans,
    SubscriptionSpan,
    subscription_matches,
)
from topics.journal_feed import DECISIONS_TOPIC, JournalFeed, _record

T0 = 1_000_000.0
BRIDGE = {"held": 3, "capacity": 10, "since": T0}


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(at: float = T0 + 10, topic: str = "chat.a", **options: Any) -> dict[str, Any]:
    base = {"eligible_authid": None, "exclude_authid": None, "eligible": None, "exclude": None}
    return {
        "id": "e1",
        "name": "n",
        "topic": topic,
        "seq": 4,
        "published_at": at,
        **base,
        **options,
    }


def refusal(at: float, uri: str = "chat.a", match: str = "exact") -> DecisionRecord:
    return DecisionRecord(at, 1, "bob", "subscribe", uri, match, False, "go away", "r1")


def evidence(
    *,
    event: dict[str, Any] | None = None,
    sessions: list[SessionSpan] | None = None,
    subscriptions: list[SubscriptionSpan] | None = None,
    refusals: list[DecisionRecord] | None = None,
    since: float = T0,
    bridge: dict[str, Any] | None = None,
) -> Evidence:
    bob = [SessionSpan(1, "bob", "user", {"type": "websocket"}, T0 + 1)]
    return Evidence(
        "bob",
        None,
        "e1",
        None,
        record() if event is None else event,
        BRIDGE if bridge is None else bridge,
        bob if sessions is None else sessions,
        subscriptions or [],
        refusals or [],
        since,
    )


def sub(since: float | None, until: float | None = None, uri: str = "chat.a", match: str = "exact"):
    return SubscriptionSpan(1, 9, uri, match, since, until)


def verdict(ev: Evidence) -> str:
    return str(answer(ev)["verdict"])


def test_the_verdicts():
    assert verdict(evidence(subscriptions=[sub(T0 + 2)])) == "delivered"
    assert verdict(evidence(subscriptions=[sub(T0 + 11)])) == "not_subscribed"
    assert verdict(evidence(subscriptions=[sub(T0 + 2, T0 + 5)])) == "not_subscribed"
    assert verdict(evidence(refusals=[refusal(T0 + 3)])) == "refused"
    assert verdict(evidence(refusals=[refusal(T0 + 20)])) == "not_subscribed"  # after: no cause
    gone = [SessionSpan(1, "bob", "user", {}, T0 + 1, T0 + 5)]
    assert verdict(evidence(sessions=gone)) == "not_connected"
    assert verdict(evidence(sessions=[])) == "not_connected"
    excluded = record(exclude_authid=["bob"])
    assert verdict(evidence(event=excluded, subscriptions=[sub(T0 + 2)])) == "excluded"
    elsewhere = record(eligible_authid=["carol"])
    assert verdict(evidence(event=elsewhere, subscriptions=[sub(T0 + 2)])) == "excluded"
    assert verdict(evidence(event=record(exclude=[1]), subscriptions=[sub(T0 + 2)])) == "excluded"
    assert verdict(evidence(event=record(eligible=[2]), subscriptions=[sub(T0 + 2)])) == "excluded"
    mine = record(eligible_authid=["bob"])
    assert verdict(evidence(event=mine, subscriptions=[sub(T0 + 2)])) == "delivered"


def test_a_pattern_subscription_counts_and_a_refusal_is_explained():
    wide = sub(T0 + 2, uri="chat.", match="prefix")
    assert verdict(evidence(subscriptions=[wide])) == "delivered"
    steps = {s["check"]: s for s in answer(evidence(refusals=[refusal(T0 + 3)]))["steps"]}
    assert steps["refused"] == {
        "check": "refused",
        "ok": False,
        "detail": "subscribing to 'chat.a' was refused at 1970-01-12T13:46:43.000Z "
        "(session 1, replica r1): go away",
        "at": T0 + 3,
    }


def test_two_tabs_one_excluded_is_delivered_to_the_other():
    tabs = [
        SessionSpan(1, "bob", "user", {}, T0 + 1),
        SessionSpan(2, "bob", "user", {}, T0 + 1),
    ]
    subs = [sub(T0 + 2), SubscriptionSpan(2, 9, "chat.a", "exact", T0 + 2)]
    ev = evidence(event=record(exclude=[1]), sessions=tabs, subscriptions=subs)
    assert verdict(ev) == "delivered"


def test_records_that_begin_after_the_publish_say_so():
    found = [SessionSpan(1, "bob", "user", {}, None)]  # already connected when records began
    ev = evidence(sessions=found, since=T0 + 20)
    result = answer(ev)
    assert result["verdict"] == "unknown"
    assert "no records before" in result["steps"][1]["detail"]
    learnt = evidence(sessions=found, subscriptions=[sub(None)], since=T0 + 5)
    assert verdict(learnt) == "delivered"  # both open since before the publish


def test_not_published_and_a_silent_bridge():
    ev = Evidence("bob", None, "e9", None, None, BRIDGE, [], [], [], T0)
    result = answer(ev)
    assert result["verdict"] == "not_published" and result["event"] is None
    assert "holds the last 10 events it published (3 now" in result["steps"][0]["detail"]
    assert "GET /inspect/api/events/e9" in result["steps"][0]["detail"]
    silent = Evidence("bob", None, "e9", None, None, {"error": "no callee"}, [], [], [], T0)
    assert answer(silent)["verdict"] == "unknown"


def test_wamp_matching():
    assert subscription_matches("a.b", "exact", "a.b")
    assert not subscription_matches("a.b", "exact", "a.b.c")
    assert subscription_matches("a.", "prefix", "a.b.c")
    assert subscription_matches("a", "prefix", "ab")  # a string prefix, as in WAMP
    assert not subscription_matches("b", "prefix", "a.b")
    assert subscription_matches("a..c", "wildcard", "a.x.c")
    assert not subscription_matches("a..c", "wildcard", "a.x.y.c")
    assert not subscription_matches("a..c", "wildcard", "a.x.d")


def test_spans_are_bounded_by_size_and_age_but_keep_what_is_open():
    clock = Clock()
    spans: Spans[SessionSpan] = Spans(3, 60, clock)
    keys = [spans.add(SessionSpan(n, "u", None, {}, clock.now)) for n in range(3)]
    spans.close(keys[0], clock.now)
    spans.close(keys[1], clock.now)
    clock.now += 61  # both closed ones are old now; the open one stays
    spans.prune()
    assert [s.session for s in spans] == [2]
    for n in range(3, 7):
        spans.add(SessionSpan(n, "u", None, {}, clock.now))
    assert len(spans) == 3 and [s.session for s in spans] == [4, 5, 6]  # size: oldest go


def test_the_journal_closes_subscriptions_when_a_session_leaves():
    clock = Clock()
    journal = Journal(10, 60, 10, 60, clock)
    journal.joined(
        {"session": 1, "authid": "bob", "transport": {"channel_framing": "websocket"}}, T0
    )
    journal.subscribed(1, 9, "chat.a", "exact", T0 + 1)
    journal.left(1, T0 + 2)
    [span] = journal.sessions_of(authid="bob")
    [subscription] = journal.subscriptions_of([1])
    assert (span.until, subscription.until, span.transport["type"]) == (T0 + 2, T0 + 2, "websocket")
    journal.joined({"session": 1, "authid": "bob"}, None)  # learnt again: a new span
    assert journal.open_sessions() == {1}


def test_the_decision_log_is_bounded_by_size_and_age_and_sorted_newest_first():
    clock = Clock()
    log = DecisionLog(3, 60, clock)
    for n in (3, 1, 2, 4):  # batches from other replicas arrive out of order
        log.add(refusal(T0 + n))
    assert [r.at for r in log.newest(lambda r: True, 10)] == [T0 + 4, T0 + 2, T0 + 1]
    clock.now = T0 + 62.5
    assert [r.at for r in log.newest(lambda r: True, 10)] == [T0 + 4]
    log.add(refusal(T0 + 63))
    assert len(log) == 2


def test_shared_rows_are_checked():
    row = refusal(T0).as_row()
    assert _record(row, "r2") == DecisionRecord(*row, "r2")  # type: ignore[call-arg]
    for bad in (None, row[:7], [*row[:6], "yes", None], ["t", *row[1:]], [*row[:1], "1", *row[2:]]):
        assert _record(bad, "r2") is None


def _publication(n: int, **options: Any) -> Publication:
    envelope = Envelope(name="article.created", payload={"n": n}, id=f"e{n}")
    return Publication(envelope, "articles" if n % 2 else "other", options)


class _Published:
    def __init__(self, id: int) -> None:
        self.id = id


def test_the_bridge_keeps_the_newest_records_and_answers_queries():
    published = Published(3)
    for n in range(5):
        published.add(
            _publication(n, exclude_authid=["x"]) if n == 4 else _publication(n), _Published(n)
        )
    assert len(published) == 3
    assert published.query(event="e1")["events"] == []  # pushed out by newer ones
    [four] = published.query(event="e4")["events"]
    assert (four["publication"], four["exclude_authid"], four["eligible"]) == (4, ["x"], None)
    assert [e["id"] for e in published.query(topic="articles")["events"]] == ["e3"]
    answer_ = published.query(limit=2)
    assert [e["id"] for e in answer_["events"]] == ["e4", "e3"]
    assert (answer_["held"], answer_["capacity"]) == (3, 3)


@pytest.mark.parametrize(
    "kwargs",
    [{"limit": 0}, {"limit": 1001}, {"limit": True}, {"event": ""}, {"topic": 5}, {"who": 1}],
)
def test_the_bridge_refuses_bad_queries(kwargs):
    with pytest.raises(ApplicationError) as refused:
        Published(3).query(**kwargs)
    assert refused.value.error == "sandbar.error.invalid_argument"


def test_config_keys_are_validated():
    from topics.service import TopicsConfig

    with pytest.raises(ValidationError):
        InspectSettings(published_records=0)
    router = {"url": "rs://127.0.0.1:1", "authid": "topics", "ticket": "t" * 32}
    for key, value in (
        ("decision_log_size", 0),
        ("journal_seconds", -1),
        ("decision_batch_seconds", 60),
    ):
        with pytest.raises(ValidationError):
            TopicsConfig(router=router, **{key: value})
    assert TopicsConfig(router=router).decision_log_size == 10_000


def test_a_replica_back_from_a_reconnect_closes_what_ended_while_it_was_away():
    journal = Journal(10, 60, 10, 60, Clock())
    for session in (1, 2, 3):
        journal.joined({"session": session, "authid": "bob"}, T0)
        journal.subscribed(session, 9, "chat.a", "exact", T0)
    journal.joined({"session": 4, "authid": "bob"}, T0 + 10)  # joined while it was learning
    journal.reconcile({1, 2}, {(1, 9)}, T0 + 5)
    assert journal.open_sessions() == {1, 2, 4}
    ended = {(s.session, s.until) for s in journal.subscriptions_of([1, 2, 3])}
    assert ended == {(1, None), (2, T0 + 5), (3, T0 + 5)}


def test_asked_by_session_the_answer_names_the_session():
    ev = Evidence(None, 5, "e1", None, record(), BRIDGE, [], [], [], T0)
    [_, connected] = answer(ev)["steps"]
    assert connected["ok"] is False
    assert connected["detail"].startswith("session 5 was not connected at ")
    assert connected["detail"].endswith("(not in the records since 1970-01-12T13:46:40.000Z)")


class _Wamp:
    """Stands in for the router session: what the feed would have published."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []

    def is_attached(self) -> bool:
        return True

    def publish(self, topic: str, batch: dict[str, Any]) -> None:
        self.published.append((topic, batch))


def test_decisions_go_out_in_batches_and_a_fault_never_denies():
    async def run() -> tuple[list[tuple[str, dict[str, Any]]], int]:
        feed = JournalFeed(Journal(), {}, batch_seconds=0.05, replica="r1")
        wamp = _Wamp()
        feed.wamp = wamp  # type: ignore[assignment]
        for n in range(450):
            feed.decided({"session": n + 1, "authid": "a"}, "chat.a", "subscribe", None, True, None)
        assert wamp.published == []  # nothing per decision
        await asyncio.sleep(0.15)
        feed.journal.decided = lambda record: 1 / 0  # type: ignore[method-assign,assignment]
        feed.decided({"session": 1}, "chat.a", "subscribe", None, False, "no")  # logged, no raise
        return wamp.published, len(feed.journal.decisions)

    published, kept = asyncio.run(run())
    assert [(topic, len(batch["rows"])) for topic, batch in published] == [
        (DECISIONS_TOPIC, 200),
        (DECISIONS_TOPIC, 200),
        (DECISIONS_TOPIC, 50),
    ]
    assert {batch["replica"] for _, batch in published} == {"r1"} and kept == 450
