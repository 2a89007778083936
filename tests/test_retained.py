"""Retained events of toOthers publishes (sandbar/router_retained.py), on the real router:
sequenced events are retained, and toOthers ones also exclude a session."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import psutil
from autobahn.wamp.types import PublishOptions, SubscribeOptions

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
