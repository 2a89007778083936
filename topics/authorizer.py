"""Decisions for the router's dynamic authorizer: who may subscribe, publish and call what.

Browsers get nothing that no topic grants: URIs matching no declared topic,
``sandbar.*`` and ``wamp.*`` procedures, registering anything, and publishing to
topics fed by the bridge are all denied. No decision is cached at the router:
most depend on the session, and a cached denial would outlive a redeploy.

Whoever sends to a topic, by a handled call or a direct publish, must first pass
the topic's subscribe decision (``on_subscribe``), unless the topic is declared
with ``write_only_senders=True``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sandbar.schemas import PayloadMismatch
from topics.gate import RateLimiter, SubscriptionCount
from topics.handlers import HandlerFailed, Reject, call_hook
from topics.inspector import NOT_STAFF, STAFF, TAP_TOPIC, is_inspector_uri
from topics.metrics import EXPLAIN, INSPECT, TopicsMetrics
from topics.patterns import MAX_URI_LENGTH
from topics.payloads import check_relayable
from topics.presence import JOIN, LEAVE, PRESENCE_PROCEDURE, Presence
from topics.registry import Topic, TopicRouter
from topics.session import Runtime, Session, SessionInfo

log = logging.getLogger("sandbar.topics.authorizer")

EXPLAIN_PROCEDURE = "explain.subscribe"

NOT_AUTHORIZED = "wamp.error.not_authorized"
NO_SUCH_PROCEDURE = "wamp.error.no_such_procedure"
ERROR_REJECTED = "sandbar.error.rejected"
ERROR_INVALID = "sandbar.error.invalid_argument"
ERROR_INTERNAL = "sandbar.error.internal"
ERROR_RATE_LIMITED = "sandbar.error.rate_limited"
EXPIRED = "your sign-in has expired; sign in again"


class Refused(Exception):
    """A client's call refused: the WAMP error URI and the reason the client is given.

    The service raises it as ``ApplicationError(error, reason)``; ``Reject`` from
    ``on_publish`` passes through as itself (it is ``sandbar.error.rejected``)."""

    def __init__(self, error: str, reason: str) -> None:
        super().__init__(reason)
        self.error, self.reason = error, reason


def shown(uri: str, limit: int = 100) -> str:
    """``uri`` as logs and messages quote it: a long one shortened, its length said."""
    return uri if len(uri) <= limit else f"{uri[:limit]}... ({len(uri)} characters)"


@dataclass(frozen=True)
class Handled:
    """A handled publish: what ``on_publish`` returned, and its publication id if published."""

    payload: Any
    publication: int | None


@dataclass(frozen=True)
class Decision:
    allow: bool
    reason: str | None = None
    disclose: bool = False

    def for_router(self) -> dict[str, Any]:
        return {"allow": self.allow, "disclose": self.disclose, "cache": False}


ALLOW = Decision(True)
DENIED = Decision(False, "authorizer error")
Matched = tuple[Topic, dict[str, Any]] | None


def _name(found: Matched) -> str | None:
    return found[0].name if found is not None else None


def deny(reason: str) -> Decision:
    return Decision(False, reason)


class Authorizer:
    def __init__(
        self,
        topics: TopicRouter,
        runtime: Runtime | None = None,
        remember: int = 10_000,
        *,
        remember_bytes: int = 1_000_000,
        allow_anonymous: bool = True,
        subscriptions: SubscriptionCount | None = None,
        clock: Callable[[], float] = time.time,
        limiter: RateLimiter | None = None,
        explain_limiter: RateLimiter | None = None,
        metrics: TopicsMetrics | None = None,
    ) -> None:
        self.topics = topics
        self.metrics = metrics or TopicsMetrics()  # the tester's count is the service's
        self.runtime = runtime
        self.allow_anonymous = allow_anonymous
        self.subscriptions = subscriptions
        self.clock = clock
        self.limiter = limiter or RateLimiter(10.0, 20)
        self.explain_limiter = explain_limiter or RateLimiter(2.0, 20)
        self._denials: OrderedDict[tuple[int, str], str] = OrderedDict()
        self._remember, self._remember_bytes = remember, remember_bytes
        self.denial_bytes = 0  # what the remembered denials cost, about
        self.presence = Presence()  # kept where the lifecycle hooks run (the leader)

    async def authorize(
        self, session: SessionInfo, uri: str, action: str, options: dict[str, Any] | None = None
    ) -> Decision:
        """Decide, and count the decision by action, result and topic pattern."""
        started = time.perf_counter()
        decision, topic = DENIED, None  # an error denies (the service fails closed)
        try:
            decision, topic = await self._authorize(session, uri, action, options or {})
        finally:
            self.metrics.decided(action, decision.allow, topic, time.perf_counter() - started)
        return decision

    async def _authorize(
        self, session: SessionInfo, uri: str, action: str, options: dict[str, Any]
    ) -> tuple[Decision, str | None]:
        """The decision, and the declared topic it was about (None if none matched)."""
        if len(uri) > MAX_URI_LENGTH:  # refused before it is matched, logged or remembered
            return deny(f"URI too long ({len(uri)} characters); at most {MAX_URI_LENGTH}"), None
        if not self.allow_anonymous and session.authmethod == "anonymous":
            return deny("sign in first: this site does not serve anonymous sessions"), None
        if self.expired(session):
            return deny(EXPIRED), None
        if action == "subscribe" and is_inspector_uri(uri):
            return self._inspect(session, uri, options.get("match") or "exact"), INSPECT
        if action == "subscribe":
            match = options.get("match") or "exact"
            found = self.topics.match(uri, match)  # type: ignore[arg-type]
            decision = await self._subscribe(session, uri, match, found)
            if not decision.allow:
                self._remember_denial(session.id, uri, decision.reason or "denied")
            elif self.subscriptions is not None:
                self.subscriptions.add(session.id, uri, match)
            return decision, _name(found)
        if action == "publish":
            found = self.topics.match(uri)
            return await self._publish(session, uri, found), _name(found)
        if action == "call" and is_inspector_uri(uri):
            return self._inspect(session, uri), INSPECT
        if action == "call":
            return self._call(uri)
        return deny(f"clients may not {action} '{uri}'"), None

    def explain(self, session_id: int, uri: str) -> str | None:
        """Why ``uri`` was last denied to this session, if this replica denied it."""
        return self._denials.get((session_id, uri))

    def expired(self, session: SessionInfo) -> bool:
        """Whether the token this session signed in with has expired."""
        return session.expires_at is not None and session.expires_at <= self.clock()

    async def may_send(
        self, session: SessionInfo, topic: Topic, uri: str, params: dict[str, Any]
    ) -> Decision:
        """A sender must be one that may subscribe (``on_subscribe``), unless the topic
        takes write-only senders: who may not read a topic may not write to it either."""
        hook = topic.hook("on_subscribe")
        if hook is None or topic.write_only_senders:
            return ALLOW
        refused = f"only sessions that may subscribe to '{uri}' may send to it"
        return await self._ask(topic, "on_subscribe", hook, session, uri, params, refused)

    async def why(
        self, session_id: int, uri: str, who: Callable[[int], Awaitable[SessionInfo]]
    ) -> dict[str, Any]:
        """``explain.subscribe``: why a subscription to ``uri`` is denied to this session."""
        limiter = self.explain_limiter
        if not limiter.allow(session_id):
            raise Refused(
                ERROR_RATE_LIMITED,
                f"slow down: at most {limiter.rate:g} explain calls a second "
                f"(bursts of {limiter.burst})",
            )
        reason = self.explain(session_id, uri)
        if reason is not None:
            return {"uri": uri, "allowed": False, "reason": reason}
        decision, _ = await self._authorize(await who(session_id), uri, "subscribe", {})
        return {"uri": uri, "allowed": decision.allow, "reason": decision.reason}

    async def handle_publish(
        self,
        caller: int,
        uri: str,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        who: Callable[[int], Awaitable[SessionInfo]],
    ) -> Handled:
        """``session.call(topic_uri, [payload])``: the sender check and on_publish decide,
        then everyone gets it. Raises ``Reject`` from the topic (or for a payload JSON
        clients cannot read), or ``Refused`` for anything else. Counted by result."""
        result = "error"
        try:
            handled = await self._handle_publish(caller, uri, args, kwargs, who)
            result = "handler_sent" if handled.payload is None else "published"
            return handled
        except Reject:
            result = "rejected"
            raise
        except Refused as exc:
            result = exc.error.rsplit(".", 1)[-1]  # one of this module's few error URIs
            raise
        finally:
            self.metrics.handled_publishes.labels(result).inc()

    async def _handle_publish(
        self,
        caller: int,
        uri: str,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        who: Callable[[int], Awaitable[SessionInfo]],
    ) -> Handled:
        found = self.topics.match(uri)
        if found is None or not found[0].handles_publish:
            raise Refused(NO_SUCH_PROCEDURE, f"no topic '{shown(uri)}' takes messages")
        topic, params = found
        if not self.limiter.allow(caller):
            raise Refused(
                ERROR_RATE_LIMITED,
                f"slow down: at most {self.limiter.rate:g} messages a second "
                f"(bursts of {self.limiter.burst})",
            )
        if len(args) != 1 or kwargs:
            raise Refused(
                ERROR_INVALID,
                f"call '{uri}' with exactly one argument, the "
                "message: session.call(uri, [payload])",
            )
        info = await who(caller)
        allowed = await self.may_send(info, topic, uri, params)
        if not allowed.allow:
            raise Refused(NOT_AUTHORIZED, allowed.reason or "sending refused")  # reason set by _ask
        session = Session.bind(info, uri, self.runtime)
        hook = topic.hook("on_publish")
        assert hook is not None
        where = f"on_publish of topic '{topic.name}' for '{uri}' (session {info.id}, authid {info.authid})"
        try:
            payload = await call_hook(hook, session, args[0], where=where, **params)
        except HandlerFailed:
            self.metrics.hook_failed("on_publish", topic.name)
            raise Refused(
                ERROR_INTERNAL, f"internal error in topic '{topic.name}' (logged)"
            ) from None
        if payload is None:  # the handler sent what it wanted itself
            return Handled(None, None)
        check_relayable(payload)
        if self.runtime is None:
            raise RuntimeError(f"cannot publish to '{uri}': no runtime to send through")
        try:
            published = self.runtime.publish(uri, payload, name=topic.event_name)
        except PayloadMismatch:  # logged and counted by the runtime: topic code's bug
            self.metrics.hook_failed("on_publish", topic.name)
            raise Refused(
                ERROR_INTERNAL, f"internal error in topic '{topic.name}' (logged)"
            ) from None
        return Handled(payload, await published)

    async def lifecycle(
        self,
        hook_name: str,
        session_id: int,
        uri: str,
        match: str,
        who: Callable[[int], Awaitable[SessionInfo]],
    ) -> None:
        """Keep the topic's presence, then run ``on_subscribed`` / ``on_unsubscribe`` of the
        topic of ``uri``, if it has one (``who`` finds the session's details, asked only
        when there is something to do)."""
        found = self.topics.match(uri, match)  # type: ignore[arg-type]
        if found is None:
            return
        topic, params = found
        hook = topic.hook(hook_name)
        if hook is None and topic.presence is None:
            return
        if topic.presence is not None and hook_name == "on_unsubscribe":
            self._left(uri, session_id)  # by id: known even if the session's details are not
        info = await who(session_id)
        if info.authrole == "backend":
            return  # presence is about clients, not the bridge peeking at a topic
        if topic.presence is not None and hook_name == "on_subscribed":
            self._joined(uri, info, topic.presence)
        if hook is None:
            return
        session = Session.bind(info, uri, self.runtime)
        where = f"{hook_name} of topic '{topic.name}' for '{uri}' (session {session_id}, authid {info.authid})"
        try:
            await call_hook(hook, session, where=where, **params)
        except Reject as refused:  # too late to refuse: the (un)subscription has happened
            log.warning("%s raised Reject (%s): ignored, nothing left to refuse", where, refused)
        except HandlerFailed:  # call_hook logged it
            self.metrics.hook_failed(hook_name, topic.name)

    async def present(
        self, session_id: int, uri: str, who: Callable[[int], Awaitable[SessionInfo]]
    ) -> None:
        """Count a session already subscribed to ``uri`` (a new leader learning the lists),
        publishing nothing: the others saw it join."""
        found = self.topics.match(uri)
        info = await who(session_id)
        if found is not None and found[0].presence is not None and info.authrole != "backend":
            self.presence.join(uri, info, found[0].presence)

    def _joined(self, uri: str, info: SessionInfo, keys: Sequence[str]) -> None:
        entry = self.presence.join(uri, info, keys)
        if entry is not None and self.runtime is not None:  # a user's first session here
            self.runtime.publish(uri, entry, name=JOIN)

    def _left(self, uri: str, session_id: int) -> None:
        authid = self.presence.leave(uri, session_id)
        if authid is not None and self.runtime is not None:  # their last session left
            self.runtime.publish(uri, {"authid": authid}, name=LEAVE)

    async def who_is_here(
        self, session_id: int, uri: str, who: Callable[[int], Awaitable[SessionInfo]]
    ) -> list[dict[str, Any]]:
        """``presence.get``: who is on ``uri``, for a caller that may subscribe to it."""
        if not self.explain_limiter.allow(session_id):
            raise Refused(
                ERROR_RATE_LIMITED,
                f"slow down: at most {self.explain_limiter.rate:g} presence or explain calls "
                f"a second (bursts of {self.explain_limiter.burst})",
            )
        found = self.topics.match(uri) if isinstance(uri, str) else None
        if found is None or found[0].presence is None:
            raise Refused(
                ERROR_INVALID,
                f"no topic '{shown(str(uri))}' keeps presence; declare it with "
                "topic(pattern, presence=('user',))",
            )
        info = await who(session_id)
        if not self.allow_anonymous and info.authmethod == "anonymous":
            decision = deny("sign in first: this site does not serve anonymous sessions")
        elif self.expired(info):
            decision = deny(EXPIRED)
        else:  # the subscribe decision, without counting a subscription it does not hold
            decision = await self._subscribe(info, uri, "exact", found)
        if not decision.allow:
            raise Refused(NOT_AUTHORIZED, decision.reason or "subscription refused")
        return self.presence.list(uri)

    async def _subscribe(
        self, session: SessionInfo, uri: str, match: str, found: Matched
    ) -> Decision:
        counted = self.subscriptions
        if counted is not None and counted.refuses(session.id, uri, match):
            return deny(
                f"this session holds {counted.limit} subscriptions, the most allowed; "
                "unsubscribe from one first"
            )
        if found is None:
            if match != "exact":
                return deny(
                    f"{match} subscriptions to '{uri}' are not allowed; subscribe to a topic"
                )
            return deny(f"no topic '{uri}'")
        topic, params = found
        hook = topic.hook("on_subscribe")
        if hook is None:
            return ALLOW
        return await self._ask(
            topic, "on_subscribe", hook, session, uri, params, "subscription refused"
        )

    async def _publish(self, session: SessionInfo, uri: str, found: Matched) -> Decision:
        if found is None:
            return deny(f"no topic '{uri}'")
        topic, params = found
        if topic.handles_publish:
            return deny(f"send to '{uri}' with session.call('{uri}', [payload]), not publish")
        if not topic.client_publish:
            return deny(f"clients may not publish to '{uri}'")
        allowed = await self.may_send(session, topic, uri, params)
        if not allowed.allow:
            return allowed
        hook = topic.hook("can_publish")
        if hook is None:
            return ALLOW
        return await self._ask(topic, "can_publish", hook, session, uri, params, "publish refused")

    def _inspect(self, session: SessionInfo, uri: str, match: str | None = None) -> Decision:
        """Staff sessions may call ``inspect.*`` and subscribe (exactly) to the tap; the
        procedures see the caller (disclosed) and check its role again."""
        if session.authrole != STAFF:
            return deny(NOT_STAFF)
        if match is not None and (match != "exact" or uri != TAP_TOPIC):
            return deny(f"staff may subscribe to '{TAP_TOPIC}' (exact) only, not '{uri}'")
        return Decision(True, disclose=True)

    def _call(self, uri: str) -> tuple[Decision, str | None]:
        if uri in (EXPLAIN_PROCEDURE, PRESENCE_PROCEDURE):
            return Decision(True, disclose=True), EXPLAIN
        found = self.topics.match(uri)
        if found is not None and found[0].handles_publish:
            # the handler needs to know who is calling
            return Decision(True, disclose=True), found[0].name
        return deny(f"no procedure '{uri}' for clients"), None

    async def _ask(
        self,
        topic: Topic,
        hook_name: str,
        hook: Any,
        info: SessionInfo,
        uri: str,
        params: dict[str, Any],
        refused: str,
    ) -> Decision:
        session = Session.bind(info, uri, self.runtime)
        where = f"{hook.__name__} of topic '{topic.name}' for '{uri}' (session {info.id}, authid {info.authid})"
        try:
            answer = await call_hook(hook, session, where=where, **params)
        except Reject as exc:
            return deny(exc.reason)
        except HandlerFailed:
            self.metrics.hook_failed(hook_name, topic.name)
            return deny("internal error in the topic (logged)")
        return ALLOW if answer is None or answer is True else deny(refused)

    def _remember_denial(self, session_id: int, uri: str, reason: str) -> None:
        """Keep the newest denials, at most ``remember`` of them and ``remember_bytes``."""
        key = (session_id, uri)
        previous = self._denials.pop(key, None)
        if previous is not None:
            self.denial_bytes -= _cost(uri, previous)
        self._denials[key] = reason
        self.denial_bytes += _cost(uri, reason)
        while self._denials and (
            len(self._denials) > self._remember or self.denial_bytes > self._remember_bytes
        ):
            (_, old_uri), old_reason = self._denials.popitem(last=False)
            self.denial_bytes -= _cost(old_uri, old_reason)


def _cost(uri: str, reason: str) -> int:
    """Bytes one remembered denial holds: both strings and the dictionary entry, about."""
    return sys.getsizeof(uri) + sys.getsizeof(reason) + 160
