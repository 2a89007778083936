"""The authorizer's decisions as a pure function of session, URI and action."""

from __future__ import annotations

import asyncio
import sys

import pytest

from topics.authorizer import Authorizer
from topics.examples import topics
from topics.patterns import PatternError
from topics.registry import TopicRouter
from topics.session import SessionInfo

ANONYMOUS = SessionInfo(id=1, authid="ANON-1", authrole="browser", authmethod="anonymous")
ALICE = SessionInfo(id=2, authid="alice", authrole="user", authmethod="ticket")


def decide(session: SessionInfo, uri: str, action: str, **options: str):
    return asyncio.run(Authorizer(topics).authorize(session, uri, action, options))


def test_private_user_topic_is_only_for_that_signed_in_user():
    assert decide(ALICE, "user.alice", "subscribe").allow
    assert decide(ALICE, "user.bob", "subscribe").reason == "this topic belongs to another user"
    assert (
        decide(ANONYMOUS, "user.ANON-1", "subscribe").reason == "sign in to receive private events"
    )


def test_no_decision_is_ever_cached_at_the_router():
    for session, uri, action in [
        (ALICE, "user.alice", "subscribe"),
        (ANONYMOUS, "articles", "subscribe"),
        (ANONYMOUS, "chat.general", "call"),
        (ANONYMOUS, "nothing", "publish"),
        (ANONYMOUS, "chat.general", "register"),
    ]:
        assert decide(session, uri, action).for_router()["cache"] is False


def test_calls_allowed_only_to_handled_topics_and_explain_with_the_caller_disclosed():
    handled = decide(ANONYMOUS, "chat.general", "call")
    assert handled.allow and handled.for_router()["disclose"] is True
    assert decide(ANONYMOUS, "explain.subscribe", "call").allow
    for uri in ("articles", "sandbar.authorize", "wamp.session.kill", "user.alice"):
        assert not decide(ANONYMOUS, uri, "call").allow
    assert not decide(ANONYMOUS, "chat.general", "register").allow


def test_remembered_denials_are_bounded_by_bytes_not_only_by_count():
    authorizer = Authorizer(topics)
    for i in range(5000):  # 500-character URIs: each denial holds its URI twice
        uri = f"nothing.{i:05d}{'x' * 486}"
        asyncio.run(authorizer.authorize(ANONYMOUS, uri, "subscribe"))
    held = sum(sys.getsizeof(uri) + sys.getsizeof(r) for (_, uri), r in authorizer._denials.items())
    print(f"\n5000 denials of 500-character URIs: {len(authorizer._denials)} kept, {held} bytes")
    assert held < 1_000_000
    newest = f"nothing.04999{'x' * 486}"
    assert authorizer.explain(ANONYMOUS.id, newest) == f"no topic '{newest}'"
    assert authorizer.explain(ANONYMOUS.id, f"nothing.00000{'x' * 486}") is None


def test_an_anonymous_hello_cannot_choose_its_authextra():
    details = {"session": 5, "authmethod": "anonymous", "authextra": {"user": "alice"}}
    assert SessionInfo.from_details(details).authextra == {}
    signed = {"session": 6, "authmethod": "ticket", "authextra": {"user": "alice"}}
    assert SessionInfo.from_details(signed).authextra == {"user": "alice"}


def test_a_proxied_session_keeps_its_clients_authmethod():
    """Behind a Crossbar proxy worker the router says ``anonymous-proxy``; topic code must
    still tell an anonymous session (whose HELLO chose its authextra) from a signed-in one."""
    for method, role, expected in [
        ("anonymous", "anonymous", "anonymous"),
        ("ticket", "user", "ticket"),
        ("ticket", "staff", "ticket"),
    ]:
        direct = {"session": 7, "authmethod": method, "authrole": role, "authextra": {"user": "a"}}
        for proxied in ("anonymous-proxy", "cryptosign-proxy"):
            info = SessionInfo.from_details({**direct, "authmethod": proxied})
            assert info == SessionInfo.from_details(direct)
            assert info.authmethod == expected


def test_write_only_senders_is_declared_only_where_it_changes_something():
    router = TopicRouter()
    with pytest.raises(PatternError, match="needs a way to send"):
        router.add_topic("a.{x}", lambda session, x: None, write_only_senders=True)
    with pytest.raises(PatternError, match="without on_subscribe changes nothing"):
        router.add_topic("b", client_publish=True, write_only_senders=True)
