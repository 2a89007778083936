"""Presence lists in-process (TopicTester, the service's own Authorizer): one entry per
user however many tabs, join/leave only on a user's first/last session, no credentials.
(In Chromium across three browser contexts: tests/test_browser_presence.py.)"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from autobahn.wamp.exception import ApplicationError

from tests.support.procs import Router, Topics, wait_until
from tests.support.wamp import Client
from tests.topics_app import topics as test_topics
from topics import TopicRouter
from topics.patterns import PatternError
from topics.testing import Refused, TopicTester

TOKENISH = {"user": "alice", "session_proof": "p" * 22, "expires_at": 2e9, "theme": "dark"}


@pytest.fixture
def t() -> Iterator[TopicTester]:
    with TopicTester(test_topics) as tester:
        yield tester


def test_one_entry_per_user_however_many_tabs(t: TopicTester):
    alice1 = t.client("alice", authextra=TOKENISH)
    alice2 = t.client("alice", authextra=TOKENISH)
    bob = t.client("bob")
    for tab in (alice1, alice2, bob):
        assert tab.subscribe("lobby.a")
    here = [
        {"authid": "alice", "extra": {"user": "alice"}},
        {"authid": "bob", "extra": {"user": "bob"}},
    ]
    assert bob.presence("lobby.a") == here
    assert t.presence("lobby.a") == here  # what session.presence() answers topic code
    assert bob.named("lobby.welcome")[-1].payload == {"here": here}
    assert alice1.presence("lobby.b") == []  # presence is per topic URI


def test_join_and_leave_only_for_a_users_first_and_last_session(t: TopicTester):
    watcher = t.client("carol")
    watcher.subscribe("lobby.a")
    alice1, alice2 = t.client("alice"), t.client("alice")
    alice1.subscribe("lobby.a")
    alice2.subscribe("lobby.a")  # her second tab: no second join
    joins = [e.payload for e in watcher.named("presence.join")]
    assert joins == [
        {"authid": "carol", "extra": {"user": "carol"}},
        {"authid": "alice", "extra": {"user": "alice"}},
    ]
    alice1.leave()  # one tab closed: she is still here
    assert watcher.named("presence.leave") == []
    assert [e["authid"] for e in watcher.presence("lobby.a")] == ["carol", "alice"]
    alice2.unsubscribe("lobby.a")  # her last one
    assert [e.payload for e in watcher.named("presence.leave")] == [{"authid": "alice"}]
    assert watcher.presence("lobby.a") == [{"authid": "carol", "extra": {"user": "carol"}}]


def test_tokens_are_never_shown(t: TopicTester):
    alice = t.client("alice", authextra=TOKENISH)
    alice.subscribe("lobby.a")
    shown = [alice.presence("lobby.a"), [e.payload for e in alice.named("presence.join")]]
    assert "session_proof" not in repr(shown) and "expires_at" not in repr(shown)
    assert "dark" not in repr(shown)  # not declared, so not shown either


def test_only_who_may_subscribe_may_ask(t: TopicTester):
    anyone = t.client("mallory")
    with pytest.raises(Refused) as refused:
        anyone.presence("lobby.closed-1")
    assert (refused.value.error, refused.value.reason) == (
        "wamp.error.not_authorized",
        "this lobby is closed",
    )
    with pytest.raises(Refused, match="keeps presence") as refused:
        anyone.presence("chat.general")  # a topic without presence
    assert refused.value.error == "sandbar.error.invalid_argument"


@pytest.mark.parametrize(
    "keys, problem",
    [
        (("user", "session_proof"), "may not show authextra key 'session_proof'"),
        (("expires_at",), "may not show authextra key 'expires_at'"),
        (("api_token",), "may not show authextra key 'api_token'"),
        ("user", "a tuple of authextra keys"),
    ],
)
def test_credential_keys_are_refused_at_declaration(keys, problem):
    with pytest.raises(PatternError, match=problem):
        TopicRouter().add_topic("room.{r}", presence=keys)


def test_presence_needs_an_exact_topic_and_its_namespace_is_reserved():
    with pytest.raises(PatternError, match="presence needs an exact topic"):
        TopicRouter().add_topic("feed", match="prefix", presence=("user",))
    with pytest.raises(PatternError, match="is reserved"):
        TopicRouter().add_topic("presence.x")


# -- a real router and two replicas: the new leader learns who is already there ------------


@pytest.fixture
def own_router(tmp_path: Path) -> Iterator[Router]:
    router = Router(tmp_path).start()
    yield router
    router.stop()


def test_a_new_leader_learns_who_is_already_there(own_router: Router, tmp_path: Path):
    first = Topics(tmp_path, own_router, name="topics-1").start()
    second = Topics(tmp_path, own_router, name="topics-2").start()
    browsers: list[Client] = []
    try:
        leader, survivor = (first, second) if "(leader)" in first.proc.output() else (second, first)
        for _ in range(2):
            browsers.append(Client(own_router.ws_url))
            browsers[-1].subscribe("lobby.failover")
            if len(browsers) == 1:
                stays = _here(browsers[0])  # the first one's (anonymous, random) authid
        before = _here(browsers[0])
        assert len(before) == 2

        os.killpg(leader.proc.pid, signal.SIGKILL)
        wait_until(lambda: "(leader)" in survivor.proc.output(), 10, "survivor leads")
        wait_until(lambda: _answers(browsers[0]), 10, "presence.get is registered again", 0.5)
        assert _here(browsers[0]) == before  # the same people (in the router's order)
        browsers[1].close()  # the new leader saw it join only through the router's lists
        wait_until(lambda: _here(browsers[0]) == stays, 10, "the leaving one is gone", 0.5)
    finally:
        for each in browsers:
            each.close()
        first.stop()
        second.stop()


def _here(browser: Client) -> set[str]:
    return {entry["authid"] for entry in browser.call("presence.get", "lobby.failover")}


def _answers(browser: Client) -> bool:
    try:
        browser.call("presence.get", "lobby.failover")
    except ApplicationError:
        return False
    return True
