"""topics.testing: topic rules driven in-process, as the service drives them."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.test_readme_topics import readme_example
from tests.topics_app import topics as test_topics
from topics import TopicRouter
from topics.session import Session
from topics.testing import Refused, Reject, TopicTester


@pytest.fixture
def rooms() -> Iterator[TopicTester]:
    """The README's room example, served by a harness."""
    namespace: dict[str, object] = {}
    exec(readme_example(), namespace)
    router = namespace["topics"]
    assert isinstance(router, TopicRouter)
    with TopicTester(router) as tester:
        yield tester


@pytest.fixture
def t() -> Iterator[TopicTester]:
    with TopicTester(test_topics) as tester:
        yield tester


def test_the_issue_example(rooms: TopicTester):
    alice = rooms.client(authid="alice", authrole="user")
    assert alice.subscribe("room.lobby").allowed
    assert rooms.client().subscribe("room.staff-x").reason == "staff only"
    assert rooms.client(authid="sam", authrole="staff").subscribe("room.staff-x")
    assert alice.call("room.lobby", {"text": " hi "}) == {"text": "hi", "author": "alice"}
    assert alice.events[-1].name == "room.message"
    assert alice.events[-1].payload == {"text": "hi", "author": "alice"}
    assert set(alice.events[-1].kwargs) == {"id", "name", "ts"}
    with pytest.raises(Reject, match="empty message"):
        alice.call("room.lobby", {"text": ""})


def test_welcome_to_the_newcomer_join_and_leave_to_the_others(rooms: TopicTester):
    alice, bob = rooms.client(authid="alice"), rooms.client(authid="bob")
    alice.subscribe("room.lobby")
    assert [e.payload for e in alice.named("room.welcome")] == [{"room": "lobby", "members": 1}]
    bob.subscribe("room.lobby")
    assert bob.named("room.welcome")[0].payload == {"room": "lobby", "members": 2}
    assert alice.named("room.join")[0].payload == {"joined": "bob"}
    assert not bob.named("room.join"), "exclude_me: the newcomer is not told of itself"
    assert rooms.count("room.lobby") == 2
    bob.leave()
    assert alice.named("room.leave")[0].payload == {"left": "bob"}
    assert rooms.count("room.lobby") == 1
    alice.unsubscribe("room.lobby")
    assert rooms.count("room.lobby") == 0


def test_addressing_sessions_authids_and_exclusions(t: TopicTester):
    tab1, tab2 = t.client(authid="carol"), t.client(authid="carol")
    other, sender = t.client(authid="dave"), t.client()
    everyone = (tab1, tab2, other, sender)
    for each in everyone:
        assert each.subscribe("relay.inbox")  # relay.inbox: any mode topic, subscribe open

    def received(mode: str) -> list[bool]:
        return [any(e.payload.get("mode") == mode for e in each.events) for each in everyone]

    assert sender.call("relay.authid", {"to": "carol", "mode": "authid"}) is None
    sender.call("relay.sessions", {"to": other.id, "mode": "sessions"})
    sender.call("relay.others", {"mode": "others"})
    assert received("authid") == [True, True, False, False]
    assert received("sessions") == [False, False, True, False]
    assert received("others") == [True, True, True, False]


def test_denials_prefix_wildcard_and_hook_exceptions(t: TopicTester, caplog):
    browser = t.client()
    assert browser.subscribe("feed", "prefix")
    assert browser.subscribe("chat", "prefix").reason == (
        "prefix subscriptions to 'chat' are not allowed; subscribe to a topic"
    )
    assert not browser.subscribe("chat..x", "wildcard")
    assert browser.subscribe("boom.x").reason == "internal error in the topic (logged)"
    assert "subscribe hook exploded" in caplog.text
    with pytest.raises(Refused) as failed:
        browser.call("boom.y", {"text": "x"})
    assert (failed.value.error, failed.value.reason) == (  # a sender passes on_subscribe first
        "wamp.error.not_authorized",
        "internal error in the topic (logged)",
    )
    with pytest.raises(Refused) as denied:
        browser.call("sandbar.authorize")
    assert denied.value.error == "wamp.error.not_authorized"
    assert browser.explain("user.x")["reason"] == "sign in to receive private events"


def test_lifecycle_hooks_that_reject_or_raise_are_logged(caplog):
    """Nothing is left to refuse once a session has (un)subscribed, but a Reject there is
    the topic code's mistake: it is logged with the topic and session, as a raise is."""
    late = TopicRouter()

    @late.topic("late.{x}")
    class Late:
        def on_subscribed(self, session: Session, x: str) -> None:
            raise Reject(f"too late for {x}")

        def on_unsubscribe(self, session: Session, x: str) -> None:
            raise RuntimeError(f"unsubscribe hook exploded for {x}")

    caplog.set_level(logging.WARNING, logger="sandbar")
    with TopicTester(late) as tester:
        alice = tester.client(authid="alice", authrole="user")
        assert alice.subscribe("late.a")
        alice.unsubscribe("late.a")
        assert alice.subscribe("late.b")  # still serving
    rejected = [r for r in caplog.records if "raised Reject" in r.getMessage()]
    assert [r.levelno for r in rejected] == [logging.WARNING, logging.WARNING]
    assert rejected[0].getMessage() == (
        f"on_subscribed of topic 'late.{{x}}' for 'late.a' (session {alice.id}, authid alice) "
        "raised Reject (too late for a): ignored, nothing left to refuse"
    )
    assert "unsubscribe hook exploded for a" in caplog.text  # logged by call_hook


def test_prefix_subscribers_get_events_under_it_and_direct_publishes_skip_the_sender(
    t: TopicTester,
):
    listener, writer = t.client(), t.client()
    listener.subscribe("feed", "prefix")
    t.publish("feed.sports", {"goal": 1}, name="score")
    assert [(e.topic, e.name) for e in listener.events] == [("feed.sports", "score")]
    writer.subscribe("cursor.room1")
    listener.subscribe("cursor.room1")
    writer.publish("cursor.room1", {"x": 3})
    assert listener.events[-1].payload == {"x": 3} and not writer.events
    with pytest.raises(Refused, match="read-only"):
        writer.publish("cursor.readonly-1", {"x": 3})


def test_rate_limit_and_no_anonymous_as_configured():
    with TopicTester(test_topics, publish_rate=0.001, publish_burst=2) as t:
        browser = t.client()
        browser.call("chat.general", {"text": "1"})
        browser.call("chat.general", {"text": "2"})
        with pytest.raises(Refused) as limited:
            browser.call("chat.general", {"text": "3"})
        assert limited.value.error == "sandbar.error.rate_limited"
    with TopicTester(test_topics, allow_anonymous=False) as t:
        assert t.client().subscribe("articles").reason == (
            "sign in first: this site does not serve anonymous sessions"
        )
        assert t.client(authid="alice").subscribe("articles")


def test_topics_cannot_be_declared_once_served(t: TopicTester):
    with pytest.raises(RuntimeError, match="declare topics at import time"):
        test_topics.add_topic("late.topic")
