"""Retained events of toOthers publishes (sandbar/router_retained.py), on the real router:
sequenced events are retained, and toOthers ones also exclude a session."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import psutil
from autobahn.wamp.types import PublishOptions, SubscribeOptions

from sandbar.router_retained import may_see
from sandbar.wamp import BackendSession, RouterConnection, open_session
from tests.support.procs import SECRET, Router

_topics = itertools.count()
TO_OTHERS = PublishOptions(acknowledge=True, retain=True, exclude=[4242])


def _worker_rss(router: Router) -> int:
    """Resident bytes of the router worker (not its controller)."""
    [worker] = [
        p
        for p in psutil.Process(router.proc.pid).children(recursive=True)
        if "RouterController" in " ".join(p.cmdline())
    ]
    return int(worker.memory_info().rss)


def _with_session(router: Router, work: Callable[[BackendSession], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        connection = RouterConnection(url=router.backend_url, authid="bridge", ticket=SECRET)
        session, gone = await open_session(connection, lambda *_: joined.set_result(None))
        try:
            await asyncio.wait_for(joined, 10)
            return await work(session)
        finally:
            session.leave()
            await asyncio.wait_for(gone, 5)

    return asyncio.run(run())


def test_a_topic_of_to_others_events_keeps_a_bounded_number(router: Router) -> None:
    """Crossbar appended each retained publish that excludes a session: 1500 toOthers
    events of 16 KB grew the router worker by ~25 MB, kept until the router stopped."""
    topic = f"test.retained.bounded.{next(_topics)}"
    text = "x" * 16_000

    async def publish(session: BackendSession) -> int:
        before = _worker_rss(router)
        for seq in range(1500):
            await session.publish(topic, seq, text=text, options=TO_OTHERS)
        return _worker_rss(router) - before

    grown = _with_session(router, publish)
    assert grown < 8_000_000, f"the router worker grew {grown / 1e6:.1f} MB"


def test_a_subscribe_for_retained_events_after_a_to_others_event_is_answered(
    router: Router,
) -> None:
    """Crossbar's retained-event check raised TypeError for an event that excludes a
    session without naming eligible ones: the SUBSCRIBE was never answered."""
    topic = f"test.retained.answered.{next(_topics)}"

    async def publish_then_subscribe(session: BackendSession) -> list[Any]:
        for seq in range(3):
            await session.publish(topic, seq, options=TO_OTHERS)
        got: list[Any] = []
        await asyncio.wait_for(
            session.subscribe(
                lambda *args, **_: got.append(args[0]),
                topic,
                options=SubscribeOptions(get_retained=True),
            ),
            5,
        )
        await asyncio.sleep(0.5)
        return got

    assert _with_session(router, publish_then_subscribe) == [2]  # the newest, once


def test_an_event_addressed_by_authid_is_not_retained_for_others(router: Router, subscribe):
    """Crossbar's retained check knew only session ids: an event sent ``to_authids``
    (``eligible_authid``) went to any session subscribing with ``get_retained``; now only
    to sessions that would have got it live, and to the backend."""
    topic = f"cursor.retained-{next(_topics)}"
    private = PublishOptions(acknowledge=True, retain=True, eligible_authid=["alice"])

    async def publish(session: BackendSession) -> list[Any]:
        await session.publish(topic, "for alice only", options=private)
        got: list[Any] = []
        await session.subscribe(
            lambda *args, **_: got.append(args[0]),
            topic,
            options=SubscribeOptions(get_retained=True),
        )
        await asyncio.sleep(0.3)
        return got

    assert _with_session(router, publish) == ["for alice only"]  # the backend reads it
    stranger = subscribe(topic, get_retained=True)  # anonymous, not alice

    async def then_everyone(session: BackendSession) -> None:
        await session.publish(topic, "for everyone", options=PublishOptions(acknowledge=True))

    _with_session(router, then_everyone)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not stranger.snapshot():
        time.sleep(0.05)
    assert [event.args[0] for event in stranger.snapshot()] == ["for everyone"]


def test_the_audience_rule_is_the_live_one() -> None:
    """``may_see``: session ids, authids and roles, eligible and excluded; the backend sees
    every retained event."""
    publish = SimpleNamespace(
        eligible=None,
        exclude=[9],
        eligible_authid=["alice", "bob"],
        exclude_authid=["bob"],
        eligible_authrole=None,
        exclude_authrole=["anonymous"],
    )
    assert may_see(publish, 1, "alice", "user")
    assert not may_see(publish, 9, "alice", "user")  # her excluded tab
    assert not may_see(publish, 2, "bob", "user")
    assert not may_see(publish, 3, "carl", "user")
    assert not may_see(publish, 4, "alice", "anonymous")
    assert may_see(publish, 5, "bridge", "backend")
    nobody = SimpleNamespace(**{**vars(publish), "eligible": [], "exclude": None})
    assert not may_see(nobody, 1, "alice", "user")
