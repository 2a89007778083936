"""The topics service: a backend WAMP session that enforces and serves the declared topics.

It registers, shared with any other replicas (round-robin):
  * ``sandbar.authorize``  the dynamic authorizer of the browser role;
  * each handled topic URI as a procedure: ``session.call(uri, [payload])`` runs
    ``on_publish`` and publishes the result;
  * ``explain.subscribe``  tells a client why a subscription was denied.
One replica at a time (the one holding ``sandbar.topics.leader``) runs the
lifecycle hooks ``on_subscribed`` / ``on_unsubscribe`` from the router's meta
events, so a welcome is sent once however many replicas run; it also keeps the
presence lists and alone registers ``presence.get``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar, Unpack

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallDetails, PublishOptions, RegisterOptions
from pydantic import Field, field_validator

from bridge.envelope import Envelope
from sandbar import metrics, tracing
from sandbar.config import ConfigError, StrictModel
from sandbar.logs import setup_logging
from sandbar.metrics import MetricsSettings
from sandbar.schemas import PayloadMismatch
from sandbar.secrets import ensure_backend_secret
from sandbar.service import run_until_signalled
from sandbar.wamp import ApplicationSession, RouterConnection, stay_connected
from topics.authorizer import (
    ERROR_INTERNAL,
    ERROR_REJECTED,
    EXPIRED,
    EXPLAIN_PROCEDURE,
    Authorizer,
    Decision,
    Refused,
    shown,
)
from topics.directory import SessionDirectory
from topics.gate import Authenticator, RateLimiter, SubscriptionCount
from topics.handlers import Reject
from topics.inspect_live import LiveInspector, add_tap_arguments, tap_settings
from topics.inspect_why import install as install_why
from topics.inspector import Inspector, staff_only
from topics.metrics import TopicsMetrics
from topics.payloads import check_relayable
from topics.presence import PRESENCE_PROCEDURE
from topics.registry import APP_VAR, DEFAULT_APP, TopicRouter, app_spec, load_app
from topics.session import Addressing, SessionInfo

log = logging.getLogger("sandbar.topics")
T = TypeVar("T")

AUTHORIZE = "sandbar.authorize"
AUTHENTICATE = "sandbar.authenticate"
REVOKED = "sandbar.auth.revoked"
LEADER = "sandbar.topics.leader"
LIST = "sandbar.topics.list"

__all__ = ["ERROR_INTERNAL", "ERROR_REJECTED", "TopicsConfig", "TopicsService"]


class TopicsConfig(StrictModel):
    router: RouterConnection
    app: str = DEFAULT_APP
    leader_retry: float = 1.0
    #: where browsers' tokens are checked (the API's GET /auth/whoami)
    api_url: str = "http://127.0.0.1:5000"
    #: sessions without a token: least privilege, or none at all
    allow_anonymous: bool = True
    #: handled publishes (session.call(topic, [msg])) per session: rate/s, burst
    publish_rate: float = Field(10.0, gt=0)
    publish_burst: int = Field(20, gt=0)
    #: explain.* calls per session: rate/s, burst
    explain_rate: float = Field(2.0, gt=0)
    explain_burst: int = Field(20, gt=0)
    #: subscriptions one session may hold at once
    max_subscriptions: int = Field(100, gt=0)
    #: the inspector's tap (topics/inspect_tap.py): events forwarded a second per tap and
    #: burst; taps one staff session may hold, and all sessions together
    tap_rate: float = Field(50.0, gt=0)
    tap_burst: int = Field(100, gt=0)
    max_taps_per_session: int = Field(4, gt=0)
    max_taps: int = Field(20, gt=0)
    #: ``/metrics`` (sandbar/metrics.py); off unless a port is given
    metrics: MetricsSettings = MetricsSettings()
    #: the inspector's records, in memory (topics/journal.py): authorization decisions,
    #: and session/subscription spans; shared decisions go out in batches this often
    decision_log_size: int = Field(10_000, gt=0, le=1_000_000)
    decision_log_seconds: float = Field(3600.0, gt=0, le=7 * 86400)
    journal_size: int = Field(10_000, gt=0, le=1_000_000)
    journal_seconds: float = Field(3600.0, gt=0, le=7 * 86400)
    decision_batch_seconds: float = Field(0.1, gt=0, le=10)

    @field_validator("app")
    @classmethod
    def _check_app(cls, app: str) -> str:
        if ":" not in app:
            raise ValueError(f"'{app}' must be 'module:attribute', e.g. '{DEFAULT_APP}'")
        return app


def load_router(spec: str) -> TopicRouter:
    """Import ``module:attribute`` and check it is a TopicRouter (see ``load_app``)."""
    return load_app(spec)


def procedure_uris(topics: TopicRouter) -> dict[str, str]:
    """WAMP registrations for the handled topics: URI → match (params become wildcards)."""
    uris: dict[str, str] = {}
    for topic in topics:
        if topic.handles_publish:
            parts = ["" if not isinstance(p, str) else p for p in topic.pattern.parts]
            uri = ".".join(parts)
            uris[uri] = "exact" if topic.pattern.is_exact else "wildcard"
    return uris


def _counted(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Count a procedure's calls in progress, so a graceful stop can wait for them."""

    @functools.wraps(method)
    async def counted(self: TopicsService, *args: Any, **kwargs: Any) -> T:
        self._serving += 1
        try:
            return await method(self, *args, **kwargs)
        finally:
            self._serving -= 1

    return counted


class TopicsService:
    def __init__(self, config: TopicsConfig, topics: TopicRouter) -> None:
        self.config = config
        self.topics = topics
        topics.freeze()
        self.held = SubscriptionCount(config.max_subscriptions)
        self.limiter = RateLimiter(config.publish_rate, config.publish_burst)
        self.explain_limiter = RateLimiter(config.explain_rate, config.explain_burst)
        self.metrics = TopicsMetrics()
        self.metrics.leader.set_function(lambda: float(self.is_leader))
        self.authorizer = Authorizer(
            topics,
            self,
            allow_anonymous=config.allow_anonymous,
            subscriptions=self.held,
            limiter=self.limiter,
            explain_limiter=self.explain_limiter,
            metrics=self.metrics,
        )
        self.authenticator = Authenticator(
            config.api_url,
            metrics=self.metrics,
            proof_secret=config.router.ticket.get_secret_value(),
        )
        self._expiries: dict[int, asyncio.TimerHandle] = {}  # session id → its end
        self._ending: set[asyncio.Future[None]] = set()
        self.sessions = SessionDirectory()
        self.subscriptions: dict[int, tuple[str, str]] = {}  # id → (uri, match)
        self.memberships: dict[int, set[int]] = {}  # session id → subscription ids
        self.wamp: ApplicationSession | None = None
        self.is_leader = False
        self._campaign: asyncio.Task[None] | None = None
        self._registrations: list[Any] = []
        self._serving = 0  # procedure calls being handled right now
        self.inspector = Inspector()  # staff-only procedures, served by the leader
        self.records = install_why(self)  # for inspect.why_not (topics/inspect_why.py)
        self.live = LiveInspector(self)  # inspect.services/sessions/topics/tap.*

    @functools.cached_property
    def settings(self) -> Mapping[str, Any]:
        """What topic code may read of this service's settings: all but the router login."""
        return MappingProxyType(self.config.model_dump(exclude={"router"}))

    # -- sending ------------------------------------------------------------------

    def publish(
        self, uri: str, payload: Any, **addressing: Unpack[Addressing]
    ) -> asyncio.Future[int | None]:
        """Send an event; raises :class:`Reject` for a payload JSON clients could not read,
        PayloadMismatch for one its event's schema (``events=``) refuses (a topic code bug)."""
        check_relayable(payload)
        name = addressing.get("name", "message")
        try:
            self.topics.schemas.check(name, payload)
        except PayloadMismatch as exc:
            self.metrics.schema_refused.labels(name).inc()
            log.error("not published to '%s': %s", shown(uri), exc)
            raise
        options = PublishOptions(
            acknowledge=True,
            eligible=addressing.get("sessions"),  # [] means nobody, not everyone
            eligible_authid=addressing.get("authids"),
            exclude=addressing.get("exclude_sessions") or None,
            exclude_authid=addressing.get("exclude_authids") or None,
            exclude_me=False,  # the leader's own taps (inspect.tap.start) see its publishes
        )
        future = asyncio.ensure_future(self._publish(uri, payload, name, options))
        future.add_done_callback(_log_failure(uri))
        return future

    async def _publish(
        self, uri: str, payload: Any, name: str, options: PublishOptions
    ) -> int | None:
        wamp = self.wamp
        if wamp is None or not wamp.is_attached():
            raise RuntimeError(f"cannot publish to '{uri}': not connected to the router")
        meta = Envelope(name=name, payload={}, trace=tracing.for_event()).meta()
        publication = await wamp.publish(uri, payload, options=options, **meta)
        return publication.id if publication is not None else None

    # -- procedures ---------------------------------------------------------------------

    @_counted
    async def authorize(
        self, details: dict[str, Any], uri: str, action: str, options: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The router's dynamic authorizer. Fails closed: any error denies."""
        if tracing.tracer is None:
            return await self._authorize(details, uri, action, options)
        attributes = {"sandbar.action": action, "sandbar.topic": uri}
        with tracing.active(
            tracing.start_span("authorize", "SERVER", attributes=attributes)
        ) as span:
            answer = await self._authorize(details, uri, action, options)
            span.set_attribute("sandbar.allow", bool(answer.get("allow")))
            return answer

    async def _authorize(
        self, details: dict[str, Any], uri: str, action: str, options: dict[str, Any] | None
    ) -> dict[str, Any]:
        try:
            info = SessionInfo.from_details(details)
            self.sessions.remember(info)
            decision = await self.authorizer.authorize(info, uri, action, options)
            if decision.reason == EXPIRED:
                self._end_at(info.id, 0)
        except Exception:
            log.exception("authorizer failed for %s '%s'; denying", action, shown(uri))
            decision = Decision(False, "authorizer error")
        self.records.decided(details, uri, action, options, decision.allow, decision.reason)
        if not decision.allow:
            log.info(
                "denied %s '%s' to session %s (%s): %s",
                action,
                shown(uri),
                details.get("session"),
                details.get("authid"),
                shown(decision.reason or "", 300),
            )
        return decision.for_router()

    @_counted
    async def authenticate(
        self, realm: str, authid: str, details: dict[str, Any]
    ) -> dict[str, Any]:
        """The router's dynamic authenticator; the session ends when its token expires."""
        principal = await self.authenticator.authenticate(realm, authid, details)
        expires = principal["extra"].get("expires_at")
        if isinstance(expires, (int, float)) and details.get("session"):
            self._end_at(int(details["session"]), expires - time.time())
        return principal

    def _end_at(self, session_id: int, delay: float) -> None:
        """End ``session_id`` (its token expired) in ``delay`` seconds, as logout would."""
        previous = self._expiries.pop(session_id, None)
        if previous is not None:
            previous.cancel()

        def end() -> None:
            self._expiries.pop(session_id, None)
            task = asyncio.ensure_future(self._end_expired(session_id))
            self._ending.add(task)
            task.add_done_callback(self._ending.discard)

        self._expiries[session_id] = asyncio.get_running_loop().call_later(max(delay, 0), end)

    async def _end_expired(self, session_id: int) -> None:
        if self.wamp is None:
            return
        try:
            await self.wamp.call(
                "wamp.session.kill",
                session_id,
                reason="sandbar.close.token_expired",
                message=EXPIRED,
            )
        except ApplicationError as exc:  # already gone: nothing to end
            log.debug("session %s not ended at expiry: %s", session_id, exc)
            return
        log.info("ended session %s: its token expired", session_id)

    @_counted
    async def explain(self, uri: str, details: CallDetails) -> dict[str, Any]:
        """Why a subscription to ``uri`` is denied to the caller (``None`` if it is allowed)."""
        try:
            return await self.authorizer.why(int(details.caller or 0), uri, self.sessions.get)
        except Refused as exc:
            raise ApplicationError(exc.error, exc.reason) from None

    @_counted
    async def handled_publish(self, *args: Any, details: CallDetails, **kwargs: Any) -> int | None:
        """``session.call(topic_uri, [payload])``: on_publish decides, then everyone gets it;
        with tracing on, in an ``on_publish`` span whose context the event carries."""
        uri = str(details.procedure)
        if tracing.tracer is None:
            return await self._handled_publish(uri, args, kwargs, details)
        attributes = {
            "messaging.system": "wamp",
            "messaging.operation.name": "on_publish",
            "messaging.operation.type": "process",
            "messaging.destination.name": uri,
        }
        with tracing.active(tracing.start_span("on_publish", "SERVER", attributes=attributes)):
            return await self._handled_publish(uri, args, kwargs, details)

    async def _handled_publish(
        self, uri: str, args: Any, kwargs: dict[str, Any], details: CallDetails
    ) -> int | None:
        caller = int(details.caller or 0)
        try:
            handled = await self.authorizer.handle_publish(
                caller, uri, args, kwargs, self.sessions.get
            )
        except Reject as exc:
            raise ApplicationError(ERROR_REJECTED, exc.reason) from None
        except Refused as exc:
            raise ApplicationError(exc.error, exc.reason) from None
        return handled.publication

    @_counted
    async def who_is_here(self, uri: str, details: CallDetails) -> list[dict[str, Any]]:
        """``presence.get``: who is on ``uri`` (registered by the leader, which keeps the lists)."""
        try:
            return await self.authorizer.who_is_here(
                int(details.caller or 0), uri, self.sessions.get
            )
        except Refused as exc:
            raise ApplicationError(exc.error, exc.reason) from None

    def presence(self, uri: str) -> list[dict[str, Any]]:
        """Who is on ``uri``; kept by the leader, the replica whose hooks ask."""
        return self.authorizer.presence.list(uri)

    def describe(self) -> list[str]:
        return [topic.name for topic in self.topics]

    # -- lifecycle hooks (leader only) ----------------------------------------------------

    async def on_subscription_created(self, session_id: int, details: dict[str, Any]) -> None:
        self.subscriptions[int(details["id"])] = (str(details["uri"]), str(details["match"]))

    async def on_subscribed(self, session_id: int, subscription_id: int) -> None:
        self.memberships.setdefault(session_id, set()).add(subscription_id)
        if subscription_id in self.subscriptions:  # another replica's grant counts here too
            self.held.add(session_id, *self.subscriptions[subscription_id])
        await self._lifecycle("on_subscribed", session_id, subscription_id)

    async def on_unsubscribed(self, session_id: int | None, subscription_id: int) -> None:
        # When a session leaves, Crossbar sends this with session_id None (it clears
        # the id first); that case is handled by on_session_left.
        if session_id is None:
            return
        if subscription_id in self.subscriptions:
            self.held.discard(session_id, *self.subscriptions[subscription_id])
        joined = self.memberships.get(session_id)
        if joined is None or subscription_id not in joined:
            return
        joined.discard(subscription_id)
        await self._lifecycle("on_unsubscribe", session_id, subscription_id)

    async def on_subscription_deleted(self, session_id: int | None, subscription_id: int) -> None:
        asyncio.get_running_loop().call_later(10, self.subscriptions.pop, subscription_id, None)

    async def on_revoked(self, payload: dict[str, Any], **meta: Any) -> None:
        """A user signed out or was disabled: end their live sessions, on every tab."""
        if not self.is_leader or self.wamp is None or not isinstance(payload.get("user"), str):
            return
        killed = await self.wamp.call(
            "wamp.session.kill_by_authid",
            payload["user"],
            reason="sandbar.close.signed_out",
            message="you were signed out",
        )
        extra = tracing.log_extra(meta.get("id"), meta.get("trace"))
        log.info("ended %d sessions of %s", len(killed or []), payload["user"], extra=extra)

    async def on_session_joined(self, details: dict[str, Any]) -> None:
        if self.is_leader:  # every replica hears it; one counts, so replicas sum
            self.metrics.sessions_joined.labels(str(details.get("authrole"))).inc()

    async def on_session_left(self, session_id: int, *_: Any) -> None:
        """A session left or its connection dropped: it unsubscribed from everything."""
        if self.is_leader:
            self.metrics.sessions_left.inc()
        self.limiter.forget(session_id)
        self.explain_limiter.forget(session_id)
        self.held.forget(session_id)
        expiry = self._expiries.pop(session_id, None)
        if expiry is not None:
            expiry.cancel()
        for subscription_id in sorted(self.memberships.pop(session_id, set())):
            await self._lifecycle("on_unsubscribe", session_id, subscription_id)
        self.sessions.left(session_id)
        await self.live.session_left(session_id)  # its inspector taps end

    async def _lifecycle(self, hook_name: str, session_id: int, subscription_id: int) -> None:
        where_known = self.subscriptions.get(subscription_id)  # before any await: may be deleted
        if not self.is_leader:
            return
        if where_known is None:
            where_known = await self._lookup_subscription(subscription_id)
            if where_known is None:
                return
        uri, match = where_known
        await self.authorizer.lifecycle(hook_name, session_id, uri, match, self.sessions.get)

    async def _lookup_subscription(self, subscription_id: int) -> tuple[str, str] | None:
        if self.wamp is None:
            return None
        try:
            details = await self.wamp.call("wamp.subscription.get", subscription_id)
        except ApplicationError:
            return None
        return (str(details["uri"]), str(details["match"])) if details else None

    async def subscriber_count(self, uri: str) -> int:
        """How many sessions are subscribed to ``uri`` right now (asks the router)."""
        if self.wamp is None:
            return 0
        subscription_id = await self.wamp.call("wamp.subscription.lookup", uri)
        if subscription_id is None:
            return 0
        return int(await self.wamp.call("wamp.subscription.count_subscribers", subscription_id))

    # -- session ------------------------------------------------------------------------

    async def on_join(self, session: ApplicationSession, details: Any) -> None:
        self.wamp = session
        self.topics.bind(self)
        self.sessions.lookup = lambda session_id: session.call("wamp.session.get", session_id)
        shared = RegisterOptions(invoke="roundrobin")
        with_details = RegisterOptions(invoke="roundrobin", details_arg="details")
        self._registrations = [
            await session.register(self.authorize, AUTHORIZE, options=shared),
            await session.register(self.authenticate, AUTHENTICATE, options=shared),
            await session.register(self.explain, EXPLAIN_PROCEDURE, options=with_details),
            await session.register(self.describe, LIST, options=shared),
        ]
        for uri, match in procedure_uris(self.topics).items():
            options = RegisterOptions(match=match, invoke="roundrobin", details_arg="details")
            self._registrations.append(
                await session.register(self.handled_publish, uri, options=options)
            )
        await session.subscribe(self.on_subscription_created, "wamp.subscription.on_create")
        await session.subscribe(self.on_subscribed, "wamp.subscription.on_subscribe")
        await session.subscribe(self.on_unsubscribed, "wamp.subscription.on_unsubscribe")
        await session.subscribe(self.on_subscription_deleted, "wamp.subscription.on_delete")
        await session.subscribe(self.on_session_joined, "wamp.session.on_join")
        await session.subscribe(self.on_session_left, "wamp.session.on_leave")
        await session.subscribe(self.on_revoked, REVOKED)
        await self.records.attach(session)
        await self.live.attach(session)
        self._campaign = asyncio.ensure_future(self._campaign_for_leader(session))
        log.info("serving %d topics: %s", len(self.topics), ", ".join(self.describe()))

    def on_leave(self, session: ApplicationSession, details: Any) -> None:
        self.wamp = None
        self.is_leader = False
        self.authorizer.presence.clear()  # stale after this; a new leader learns it anew
        self.topics.bind(None)
        if self._campaign is not None:
            self._campaign.cancel()
        log.warning(
            "router connection lost (%s); browsers are denied until it is back",
            getattr(details, "reason", details),
        )

    async def _retire(self, patience: float = 2.0) -> None:
        """Unregister first, so the router sends new calls to the other replicas, then let
        the calls already here finish: a graceful stop costs no client a failed request."""
        for registration in self._registrations:
            with contextlib.suppress(Exception):
                await registration.unregister()
        self._registrations = []
        deadline = asyncio.get_running_loop().time() + patience
        while self._serving and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        self.records.flush()  # the decisions made so far reach the other replicas

    async def _campaign_for_leader(self, session: ApplicationSession) -> None:
        """Hold ``sandbar.topics.leader`` (a single registration); retry while another does."""
        while session.is_attached():
            try:
                self._registrations.append(await session.register(lambda: True, LEADER))
            except ApplicationError:
                await asyncio.sleep(self.config.leader_retry)
                continue
            self.is_leader = True
            await self._learn_presence(session)
            leader_only = RegisterOptions(details_arg="details")
            self._registrations.append(
                await session.register(self.who_is_here, PRESENCE_PROCEDURE, options=leader_only)
            )
            for uri, procedure in self.inspector.procedures.items():
                self._registrations.append(
                    await session.register(staff_only(procedure), uri, options=leader_only)
                )
            log.info("this replica runs the lifecycle hooks (leader)")
            return

    async def _learn_presence(self, session: ApplicationSession) -> None:
        """A new leader learns who is already on presence topics from the router (after a
        failover or a reconnect), without publishing joins the clients have already seen."""
        if not any(topic.presence is not None for topic in self.topics):
            return
        try:
            listed = await session.call("wamp.subscription.list")
            for subscription_id in (listed or {}).get("exact", []):
                details = await session.call("wamp.subscription.get", subscription_id)
                found = self.topics.match(str((details or {}).get("uri", "")))
                if found is None or found[0].presence is None:
                    continue
                members = await session.call("wamp.subscription.list_subscribers", subscription_id)
                for member in members or []:
                    await self.authorizer.present(int(member), details["uri"], self.sessions.get)
        except ApplicationError as exc:
            log.warning("could not learn who is present from the router: %s", exc)

    async def run(self, stop: asyncio.Event) -> None:
        endpoint = metrics.serve(self.metrics.registry, self.config.metrics, "topics")
        leaving = asyncio.Event()
        connection = asyncio.ensure_future(
            stay_connected(
                self.config.router, leaving, on_join=self.on_join, on_leave=self.on_leave
            )
        )
        await stop.wait()
        await self._retire()
        leaving.set()
        await connection
        if endpoint is not None:
            endpoint.close()
        log.info("stopped")


def _log_failure(uri: str) -> Any:
    def check(future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.error("publish to '%s' failed: %s", uri, future.exception())

    return check


def run(config: TopicsConfig) -> None:
    tracing.setup("topics")
    service = TopicsService(config, load_router(config.app))
    run_until_signalled(service.run)


def main(argv: list[str] | None = None) -> None:
    env = os.environ
    parser = argparse.ArgumentParser(prog="sandbar-topics", description="Sandbar topics service")
    parser.add_argument(
        "--app",
        default=app_spec(env),
        help=f"the TopicRouter to serve, as module:attribute (env {APP_VAR}; default {DEFAULT_APP})",
    )
    parser.add_argument(
        "--router-url", default=env.get("SANDBAR_ROUTER_BACKEND_URL", "rs://127.0.0.1:8081")
    )
    parser.add_argument(
        "--retry-max-delay",
        type=float,
        default=5.0,
        help="cap in seconds of the reconnect backoff (default: 5)",
    )
    parser.add_argument(
        "--api-url",
        default=env.get("SANDBAR_TOPICS_API_URL", "http://127.0.0.1:5000"),
        help="the API that vouches for browsers' tokens (env SANDBAR_TOPICS_API_URL)",
    )
    parser.add_argument(
        "--no-anonymous",
        action="store_true",
        default=env.get("SANDBAR_TOPICS_ALLOW_ANONYMOUS", "1").lower() in ("0", "false", "no"),
        help="refuse everything to sessions without a token",
    )
    parser.add_argument(
        "--publish-rate",
        type=float,
        default=float(env.get("SANDBAR_TOPICS_PUBLISH_RATE", 10)),
        help="handled publishes per second per session (default: 10)",
    )
    parser.add_argument(
        "--publish-burst",
        type=int,
        default=int(env.get("SANDBAR_TOPICS_PUBLISH_BURST", 20)),
        help="burst allowance above the rate (default: 20)",
    )
    parser.add_argument(
        "--explain-rate",
        type=float,
        default=float(env.get("SANDBAR_TOPICS_EXPLAIN_RATE", 2)),
        help="explain.* calls per second per session (default: 2, bursts of 20)",
    )
    parser.add_argument(
        "--max-subscriptions",
        type=int,
        default=int(env.get("SANDBAR_TOPICS_MAX_SUBSCRIPTIONS", 100)),
        help="subscriptions one session may hold at once (default: 100)",
    )
    metrics.add_arguments(parser, "topics")
    add_tap_arguments(parser, env)
    args = parser.parse_args(argv)
    setup_logging(service="topics")
    try:
        secret = ensure_backend_secret()
        config = TopicsConfig(
            app=args.app,
            api_url=args.api_url,
            allow_anonymous=not args.no_anonymous,
            publish_rate=args.publish_rate,
            publish_burst=args.publish_burst,
            explain_rate=args.explain_rate,
            max_subscriptions=args.max_subscriptions,
            **tap_settings(args),
            metrics=metrics.settings_from(args, "topics", env=env),
            router=RouterConnection(
                url=args.router_url,
                authid="topics",
                ticket=secret,
                retry_max_delay=args.retry_max_delay,
                retry_initial_delay=min(0.25, args.retry_max_delay),
            ),
        )
        tracing.check()
        run(config)
    except (ConfigError, ValueError) as exc:
        print(f"sandbar-topics: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
