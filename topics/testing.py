"""Test topic rules in-process, in milliseconds: no router, no network.

    from topics.testing import TopicTester

    t = TopicTester(my_topics)
    alice = t.client(authid="alice", authrole="user")
    assert alice.subscribe("room.lobby").allowed
    assert t.client().subscribe("room.staff-x").reason == "staff only"
    alice.call("room.lobby", {"text": "hi"})       # on_publish's result, or raises the Reject
    assert alice.events[-1].name == "room.message"

Every decision goes through the service's own :class:`~topics.authorizer.Authorizer`
(authorize, explain, handled publishes, lifecycle hooks); the tester plays only the
router's part: sessions, subscriptions, and fan-out with the router's addressing rules.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Self, TypeVar, Unpack

from bridge.envelope import Envelope
from topics.authorizer import EXPLAIN_PROCEDURE, Authorizer, Refused
from topics.gate import RateLimiter
from topics.handlers import Reject
from topics.presence import PRESENCE_PROCEDURE
from topics.registry import TopicRouter
from topics.session import Addressing, SessionInfo

__all__ = ["Event", "Outcome", "Refused", "Reject", "TestClient", "TopicTester"]

T = TypeVar("T")
Match = Literal["exact", "prefix", "wildcard"]
NOT_AUTHORIZED = "wamp.error.not_authorized"


@dataclass(frozen=True)
class Outcome:
    """The authorizer's answer to a subscribe: ``allowed``, and the ``reason`` if not."""

    allowed: bool
    reason: str | None = None

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(frozen=True)
class Event:
    """One event as a subscriber receives it: ``args`` and ``kwargs`` (``id``, ``name``, ``ts``)."""

    topic: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    @property
    def payload(self) -> Any:
        return self.args[0] if self.args else None

    @property
    def name(self) -> str | None:
        return self.kwargs.get("name")


@dataclass
class TestClient:
    """A browser-like session. Lifecycle hooks have run by the time each method returns."""

    __test__ = False  # not a pytest test class

    tester: TopicTester
    info: SessionInfo
    events: list[Event] = field(default_factory=list)
    joined: bool = True

    @property
    def id(self) -> int:
        return self.info.id

    @property
    def authid(self) -> str | None:
        return self.info.authid

    def subscribe(self, uri: str, match: Match = "exact") -> Outcome:
        return self.tester._run(self.tester._subscribe(self, uri, match))

    def unsubscribe(self, uri: str, match: Match = "exact") -> None:
        self.tester._run(self.tester._unsubscribe(self, uri, match))

    def call(self, uri: str, *args: Any, **kwargs: Any) -> Any:
        """``session.call(uri, [payload])``: on_publish's result (published to subscribers).
        Raises ``Reject`` from the topic, or ``Refused`` (``.error``, ``.reason``) otherwise."""
        return self.tester._run(self.tester._call(self, uri, args, kwargs))

    def publish(self, uri: str, payload: Any = None) -> None:
        """A direct publish (``client_publish=True`` topics); raises ``Refused`` if denied."""
        self.tester._run(self.tester._client_publish(self, uri, payload))

    def explain(self, uri: str) -> dict[str, Any]:
        """What ``explain.subscribe`` answers this session."""
        return dict(self.call(EXPLAIN_PROCEDURE, uri))

    def presence(self, uri: str) -> list[dict[str, Any]]:
        """What ``presence.get`` answers this session: who is on ``uri``."""
        return list(self.call(PRESENCE_PROCEDURE, uri))

    def leave(self) -> None:
        """Close the session (or lose the connection): on_unsubscribe runs for each topic."""
        self.tester._run(self.tester._leave(self))

    def named(self, name: str) -> list[Event]:
        """The events received with this ``name`` (e.g. ``"room.welcome"``)."""
        return [event for event in self.events if event.name == name]


class TopicTester:
    """Drives a TopicRouter the way the topics service does, with an in-process router."""

    def __init__(
        self,
        topics: TopicRouter,
        *,
        allow_anonymous: bool = True,
        publish_rate: float = 10.0,
        publish_burst: int = 20,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        """The keyword arguments are the service's settings of the same names;
        ``settings`` adds to what topic code reads as ``session.settings`` (e.g. ``api_url``)."""
        self.topics = topics
        self.settings: Mapping[str, Any] = MappingProxyType(
            {
                "api_url": "http://127.0.0.1:5000",
                "allow_anonymous": allow_anonymous,
                "publish_rate": publish_rate,
                "publish_burst": publish_burst,
                **(settings or {}),
            }
        )
        topics.freeze("a TopicTester is serving these topics")
        self.limiter = RateLimiter(publish_rate, publish_burst)
        self.authorizer = Authorizer(
            topics, self, allow_anonymous=allow_anonymous, limiter=self.limiter
        )
        self.loop = asyncio.new_event_loop()
        self.sessions: dict[int, TestClient] = {}
        #: (uri, match) → subscription id, and subscription id → member session ids
        self._subscription_ids: dict[tuple[str, str], int] = {}
        self._members: dict[int, list[int]] = {}
        self._ids = itertools.count(1)
        self._subscriptions = itertools.count(1)
        self._publications = itertools.count(1)
        topics.bind(self)

    # -- sessions ---------------------------------------------------------------------

    def client(
        self,
        authid: str | None = None,
        authrole: str | None = None,
        *,
        authextra: dict[str, Any] | None = None,
    ) -> TestClient:
        """A signed-in session (``authid``, role ``authrole`` or ``"user"``), or an
        anonymous one, as the router's authenticators make them."""
        session_id = next(self._ids)
        if authid is None:
            info = SessionInfo(
                id=session_id,
                authid=f"anonymous-{session_id}",
                authrole=authrole or "anonymous",
                authmethod="anonymous",
                authprovider="static",
                authextra=authextra or {},
            )
        else:
            info = SessionInfo(
                id=session_id,
                authid=authid,
                authrole=authrole or "user",
                authmethod="ticket",
                authprovider="dynamic",
                authextra=authextra if authextra is not None else {"user": authid},
            )
        client = TestClient(self, info)
        self.sessions[session_id] = client
        return client

    async def _who(self, session_id: int) -> SessionInfo:
        client = self.sessions.get(session_id)
        return client.info if client is not None else SessionInfo(id=session_id)

    # -- what clients do ------------------------------------------------------------------

    async def _subscribe(self, client: TestClient, uri: str, match: Match) -> Outcome:
        decision = await self.authorizer.authorize(client.info, uri, "subscribe", {"match": match})
        if not decision.allow:
            return Outcome(False, decision.reason)
        key = (uri, match)
        if key not in self._subscription_ids:
            self._subscription_ids[key] = next(self._subscriptions)
        subscription = self._subscription_ids[key]
        members = self._members.setdefault(subscription, [])
        if client.id not in members:
            members.append(client.id)
            await self.authorizer.lifecycle("on_subscribed", client.id, uri, match, self._who)
        return Outcome(True)

    async def _unsubscribe(self, client: TestClient, uri: str, match: Match) -> None:
        subscription = self._subscription_ids.get((uri, match))
        members = self._members.get(subscription or 0, [])
        if client.id not in members:
            raise ValueError(f"session {client.id} is not subscribed to '{uri}' ({match})")
        members.remove(client.id)
        await self.authorizer.lifecycle("on_unsubscribe", client.id, uri, match, self._who)

    async def _call(
        self, client: TestClient, uri: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        self._check_joined(client)
        decision = await self.authorizer.authorize(client.info, uri, "call")
        if not decision.allow:
            raise Refused(NOT_AUTHORIZED, decision.reason or "denied")
        if uri == EXPLAIN_PROCEDURE:
            return await self.authorizer.why(client.id, str(args[0]), self._who)
        if uri == PRESENCE_PROCEDURE:
            return await self.authorizer.who_is_here(client.id, args[0], self._who)
        handled = await self.authorizer.handle_publish(client.id, uri, args, kwargs, self._who)
        return handled.payload

    async def _client_publish(self, client: TestClient, uri: str, payload: Any) -> None:
        self._check_joined(client)
        decision = await self.authorizer.authorize(client.info, uri, "publish")
        if not decision.allow:
            raise Refused(NOT_AUTHORIZED, decision.reason or "denied")
        args = () if payload is None else (payload,)
        self._deliver(uri, args, {}, exclude_sessions=[client.id])  # WAMP's exclude_me

    async def _leave(self, client: TestClient) -> None:
        self._check_joined(client)
        client.joined = False
        self.limiter.forget(client.id)
        where = {sid: key for key, sid in self._subscription_ids.items()}
        for subscription in sorted(self._members):
            members = self._members[subscription]
            if client.id in members:
                members.remove(client.id)
                uri, match = where[subscription]
                await self.authorizer.lifecycle("on_unsubscribe", client.id, uri, match, self._who)

    def _check_joined(self, client: TestClient) -> None:
        if not client.joined:
            raise RuntimeError(f"session {client.id} has left")

    # -- the Runtime topic code sends through ----------------------------------------------

    def publish(
        self, uri: str, payload: Any, **addressing: Unpack[Addressing]
    ) -> asyncio.Future[int | None]:
        """What ``session.send``/``publish`` and ``topics.publish`` reach: delivered at once
        (a payload that does not fit its event's schema raises PayloadMismatch, as served)."""
        self.topics.schemas.check(addressing.get("name", "message"), payload)
        meta = Envelope(name=addressing.get("name", "message"), payload={}).meta()
        self._deliver(
            uri,
            (payload,),
            meta,
            sessions=addressing.get("sessions"),
            authids=addressing.get("authids"),
            exclude_sessions=addressing.get("exclude_sessions"),
            exclude_authids=addressing.get("exclude_authids"),
        )
        future: asyncio.Future[int | None] = self.loop.create_future()
        future.set_result(next(self._publications))
        return future

    async def subscriber_count(self, uri: str) -> int:
        """The router's count for ``uri``: sessions with an exact subscription to it."""
        subscription = self._subscription_ids.get((uri, "exact"))
        return len(self._members.get(subscription or 0, []))

    def presence(self, uri: str) -> list[dict[str, Any]]:
        """Who is on ``uri``, as ``session.presence()`` answers topic code."""
        return self.authorizer.presence.list(uri)

    def count(self, uri: str) -> int:
        """:meth:`subscriber_count` from a test (not a coroutine)."""
        return self._run(self.subscriber_count(uri))

    def _deliver(
        self,
        uri: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        sessions: list[int] | None = None,
        authids: list[str] | None = None,
        exclude_sessions: list[int] | None = None,
        exclude_authids: list[str] | None = None,
    ) -> None:
        for client in self._receivers(uri):
            if sessions is not None and client.id not in sessions:
                continue
            if authids is not None and client.authid not in authids:
                continue
            if client.id in (exclude_sessions or ()) or client.authid in (exclude_authids or ()):
                continue
            client.events.append(Event(uri, args, dict(kwargs)))

    def _receivers(self, uri: str) -> Iterator[TestClient]:
        """One delivery per matching subscription a session holds, as the router does."""
        for (pattern, match), subscription in self._subscription_ids.items():
            if _matches(pattern, match, uri):
                for session_id in self._members.get(subscription, []):
                    yield self.sessions[session_id]

    # -- running ---------------------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` and whatever it scheduled (sends, tasks) to completion."""
        result = self.loop.run_until_complete(coro)
        for _ in range(100):
            pending = asyncio.all_tasks(self.loop)
            if not pending:
                break
            self.loop.run_until_complete(asyncio.wait(pending))
        return result

    def close(self) -> None:
        self.topics.bind(None)
        self.loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _matches(pattern: str, match: str, uri: str) -> bool:
    if match == "exact":
        return pattern == uri
    if match == "prefix":
        return uri.startswith(pattern)
    wanted, parts = pattern.split("."), uri.split(".")
    return len(wanted) == len(parts) and all(
        w in ("", p) for w, p in zip(wanted, parts, strict=True)
    )
