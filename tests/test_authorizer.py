"""The authorizer's decisions as a pure function of session, URI and action."""

from __future__ import annotations

import asyncio

from topics.authorizer import Authorizer
from topics.examples import topics
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
