"""The bridge service: receive envelopes over ZeroMQ, publish them into the router.

Every publish is acknowledged by the router, and at most ``max_in_flight`` are
outstanding at once. While the router is away, events wait in a bounded buffer
and go out in their original order on reconnect; when the buffer is full the
bridge stops reading ZeroMQ, so back-pressure reaches the senders (whose
``send`` then fails loudly) instead of events vanishing here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import logging
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from autobahn.wamp.exception import ApplicationError, TransportLost
from autobahn.wamp.types import PublishOptions, SubscribeOptions

from bridge import curve
from bridge.config import DEFAULT_PATH, BridgeConfig, check_routes, load_config, stand_ins
from bridge.envelope import Ack, Envelope, MalformedFrame, reply_address
from bridge.metrics import BridgeMetrics
from bridge.others import leave_out
from bridge.published import PUBLISHED_PROCEDURE, Published
from bridge.routes import Publication
from bridge.schemas import load_event_schemas
from bridge.sequencer import Sequencer
from sandbar import jsoncodec, metrics, tracing
from sandbar.config import ConfigError
from sandbar.logs import setup_logging
from sandbar.schemas import EventSchemas, PayloadMismatch
from sandbar.secrets import ensure_backend_secret
from sandbar.service import run_until_signalled
from sandbar.wamp import ApplicationSession, stay_connected
from topics.registry import APP_VAR, app_spec

log = logging.getLogger("sandbar.bridge")

STATS_PROCEDURE = "sandbar.bridge.stats"
RECEIVE_BATCH = 256  # frames taken per wake-up, at most
_ACKNOWLEDGED = PublishOptions(acknowledge=True)
#: sequenced events are retained: the router remembers where each topic stands
_ACKNOWLEDGED_RETAINED = PublishOptions(acknowledge=True, retain=True)


def _publish_options(pub: Publication) -> PublishOptions:
    retain = pub.envelope.seq is not None or bool(pub.options.get("retain"))
    if not pub.options or set(pub.options) == {"retain"}:  # the common case, built once
        return _ACKNOWLEDGED_RETAINED if retain else _ACKNOWLEDGED
    options = dict(pub.options)
    if retain:
        options["retain"] = True
    return PublishOptions(acknowledge=True, **options)


async def _last_retained_seq(
    session: ApplicationSession, topic: str
) -> tuple[int | None, str | None]:
    seen: list[tuple[int, str | None]] = []

    def on_event(*args: Any, **kwargs: Any) -> None:
        if isinstance(kwargs.get("seq"), int):
            seen.append((kwargs["seq"], kwargs.get("epoch")))

    subscription = await session.subscribe(
        on_event, topic, options=SubscribeOptions(get_retained=True)
    )
    try:  # one round trip: the retained event is sent before this call's answer
        await session.call("wamp.session.count")
    finally:
        await subscription.unsubscribe()
    return seen[-1] if seen else (None, None)


def _publish_span(pub: Publication) -> Any:
    """``publish <route topic>``, a PRODUCER span (the messaging conventions): a child of
    the event's creating context, so the trace runs on from the API's commit, and linked
    to it as the conventions ask; it ends at the router's acknowledgement."""
    envelope = pub.envelope
    destination = pub.template or pub.topic
    return tracing.start_span(
        f"publish {destination}",
        "PRODUCER",
        parent=envelope.trace,
        link=True,
        attributes={
            "messaging.system": "wamp",
            "messaging.operation.name": "publish",
            "messaging.operation.type": "send",
            "messaging.destination.name": pub.topic,
            "messaging.destination.template": destination,
            "messaging.message.id": envelope.id,
            "sandbar.event.name": envelope.name,
        },
    )


def _refusal_address(frame: bytes, sender: bytes) -> tuple[str, bytes] | None:
    """Where to refuse a frame that failed validation: its id and the socket awaiting the
    answer, if it asked for one (``ack: true``) and is JSON enough to say so;
    fire-and-forget senders never read answers."""
    try:
        document = jsoncodec.loads(frame)
        event_id = document.get("id") if document.get("ack") is True else None
    except Exception:
        return None
    if not isinstance(event_id, str):
        return None
    try:
        reply_to = reply_address(document)
    except MalformedFrame:  # a bad reply_to: the sending socket hears of it instead
        reply_to = None
    return event_id, _answer_to(reply_to, sender)


def _answer_to(reply_to: str | None, sender: bytes) -> bytes:
    """The socket an ack goes to: the one the envelope names, or the one that sent it."""
    return reply_to.encode() if reply_to else sender


def _connection_lost(exc: BaseException, session: ApplicationSession) -> bool:
    """Did this publish fail because the session went away (retry), not because it was refused?"""
    if isinstance(exc, TransportLost) or not session.is_attached():
        return True
    return isinstance(exc, ApplicationError) and exc.error.startswith("wamp.close.")


@dataclass
class BridgeStats:
    received: int = 0
    published: int = 0
    rejected: int = 0
    requeued: int = 0
    connects: int = 0
    intake_paused: int = 0
    malformed: Counter[str] = field(default_factory=Counter)
    others_ignored: Counter[str] = field(default_factory=Counter)  # toOthers claims refused
    schema_refused: Counter[str] = field(default_factory=Counter)  # by event name

    def as_dict(self, *, buffered: int, in_flight: int, connected: bool) -> dict[str, Any]:
        return {
            "received": self.received,
            "published": self.published,
            "rejected": self.rejected,
            "requeued": self.requeued,
            "connects": self.connects,
            "intake_paused": self.intake_paused,
            "malformed": dict(self.malformed),
            "malformed_total": sum(self.malformed.values()),
            "others_ignored": dict(self.others_ignored),
            "schema_refused": dict(self.schema_refused),
            "buffered": buffered,
            "in_flight": in_flight,
            "connected": connected,
        }


class Bridge:
    def __init__(self, config: BridgeConfig, schemas: EventSchemas | None = None) -> None:
        self.config = config
        self.routes = config.route_table()
        #: payload schemas every frame is checked against (bridge/schemas.py)
        self.schemas = schemas or EventSchemas()
        self._secret = config.router.ticket.get_secret_value()  # checks toOthers proofs
        self.stats = BridgeStats()
        self._queue: deque[Publication] = deque()
        self._in_flight: dict[int, tuple[Publication, asyncio.Future[Any]]] = {}
        self._keys = itertools.count()
        self._session: ApplicationSession | None = None
        self._work = asyncio.Event()  # something to publish, or a window slot freed
        self._room = asyncio.Event()  # the buffer has room again
        self._room.set()
        self._recovering: asyncio.Task[None] | None = None
        self.sequencer = Sequencer(
            gap_timeout=config.publish.gap_timeout, remember=config.publish.duplicate_window
        )
        self._waiting: dict[str, list[bytes]] = {}  # event id → senders awaiting its ack
        self._baselines: dict[str, asyncio.Future[None]] = {}  # topics being looked up
        self._socket: zmq.asyncio.Socket | None = None
        self.intake_error: str | None = None  # why the receive task ended, if it did
        self._stopping = False
        self.metrics = BridgeMetrics(self.snapshot)
        self.published = Published(config.inspect.published_records)  # for inspect.why_not

    # -- intake -----------------------------------------------------------

    def accept(self, frame: bytes, sender: bytes = b"") -> None:
        """Decode, route and sequence one frame; a bad one is logged, counted and dropped."""
        try:
            envelope = Envelope.from_bytes(frame, self.config.zmq.max_frame_bytes)
            publication = self.routes.resolve(envelope)
            self._check_schema(envelope)
        except MalformedFrame as exc:
            self.stats.malformed[exc.reason] += 1
            log.warning("dropped malformed frame (%s): %s", exc.reason, exc.detail)
            refusal = _refusal_address(frame, sender) if sender else None
            if refusal is not None:  # tell the sender it is refused for good: no resends
                event_id, address = refusal
                self._reply(address, Ack(event_id, False, f"{exc.reason}: {exc.detail}"))
            return
        self.stats.received += 1
        publication = leave_out(publication, self._secret, self.stats.others_ignored)
        address = _answer_to(envelope.reply_to, sender)
        if self.sequencer.was_published(envelope.id):  # a resend whose ack got lost
            self.sequencer.stats.duplicates += 1
            if envelope.ack and sender:
                self._reply(address, Ack(envelope.id, True))
            return
        if envelope.ack and sender:
            self._waiting.setdefault(envelope.id, []).append(address)
        self._enqueue(self.sequencer.admit(publication))  # a pending duplicate adds nothing
        topic = publication.topic
        if self.sequencer.needs_baseline(topic) and topic not in self._baselines:
            self._baselines[topic] = asyncio.ensure_future(self._learn_baseline(topic))

    def _check_schema(self, envelope: Envelope) -> None:
        """A payload its event's schema refuses is malformed (``schema_mismatch``), and
        counted by event name too: a sender's bug, never published."""
        try:
            self.schemas.check(envelope.name, envelope.payload)
        except PayloadMismatch as exc:
            self.stats.schema_refused[envelope.name] += 1
            raise MalformedFrame("schema_mismatch", str(exc)) from None

    async def _learn_baseline(self, topic: str) -> None:
        """Where ``topic`` stands at the router: the seq of its retained (last) event."""
        last: int | None = None
        epoch: str | None = None
        while True:
            session = self._session
            if session is None or not session.is_attached() or self._recovering is not None:
                await asyncio.sleep(0.05)
                continue
            try:
                last, epoch = await _last_retained_seq(session, topic)
                break
            except Exception as exc:
                if _connection_lost(exc, session):
                    continue
                log.warning(
                    "could not read where '%s' stands (%s); starting from the "
                    "lowest event on offer",
                    topic,
                    exc,
                )
                break
        del self._baselines[topic]
        ready, done = self.sequencer.set_baseline(topic, last, epoch)
        for pub in done:  # published before a restart: the sender only needs the ack
            self._answer(pub.envelope.id, Ack(pub.envelope.id, True))
        self._enqueue(ready)

    def _enqueue(self, ready: list[Publication]) -> None:
        if not ready:
            return
        self._queue.extend(ready)
        if len(self._queue) >= self.config.publish.buffer_size:
            self._room.clear()
        self._work.set()

    def _reply(self, sender: bytes, ack: Ack) -> None:
        if self._socket is not None:
            self._socket.send_multipart([sender, ack.to_bytes()])

    def _answer(self, event_id: str, ack: Ack) -> None:
        for sender in self._waiting.pop(event_id, []):
            self._reply(sender, ack)

    async def receive(self, socket: zmq.asyncio.Socket) -> None:
        # Awaiting each frame costs a future and an event-loop turn; after one arrives,
        # take what else is already queued with plain non-blocking reads on the same socket.
        queued: zmq.Socket[bytes] = zmq.Socket.shadow(socket.underlying)
        while True:
            if not self._room.is_set():
                self.stats.intake_paused += 1
                log.warning(
                    "buffer full (%d events waiting for the router): pausing intake; "
                    "senders queue, then fail, until the router is back",
                    len(self._queue),
                )
                await self._room.wait()
                log.info("buffer has room again: intake resumed")
            self._take(await socket.recv_multipart())
            for _ in range(RECEIVE_BATCH):
                if not self._room.is_set():
                    break
                try:
                    self._take(queued.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break

    def _take(self, frames: list[bytes]) -> None:
        if len(frames) != 2:  # the sender's id, then one frame: an event is never multipart
            self.stats.malformed["multipart"] += 1
            log.warning("dropped a %d-part message: send each event as one frame", len(frames) - 1)
            return
        try:
            self.accept(frames[1], frames[0])
        except Exception as exc:  # a frame we failed on costs that frame, never the intake
            self.stats.malformed["unexpected"] += 1
            log.error(
                "dropped a frame that failed unexpectedly (%s: %.200s)",
                type(exc).__name__,
                exc,
                exc_info=not isinstance(exc, RecursionError),  # that traceback is all noise
            )

    def _intake_ended(self, receive: asyncio.Task[None]) -> None:
        """The receive task only ends when stopped at shutdown; anything else is loud,
        and ``intake_running`` turns false so the health check fails."""
        if self._stopping:
            return
        exc = None if receive.cancelled() else receive.exception()
        self.intake_error = f"{type(exc).__name__}: {exc}" if exc else "ended"
        log.critical(
            "intake stopped (%s): no event is received until the bridge restarts",
            self.intake_error,
            exc_info=exc,
        )

    async def expire_gaps(self) -> None:
        """Release events held for a gap that never filled (see bridge.sequencer)."""
        while True:
            await asyncio.sleep(0.5)
            ready = self.sequencer.expire()
            if ready:
                log.warning("gave up waiting for a gap before %d held events", len(ready))
                self._enqueue(ready)

    # -- output -----------------------------------------------------------

    async def pump(self) -> None:
        window = self.config.publish.max_in_flight
        while True:
            await self._work.wait()
            self._work.clear()
            session = self._session
            while (
                session is not None
                and session.is_attached()
                and self._recovering is None
                and self._queue
                and len(self._in_flight) < window
            ):
                publication = self._queue.popleft()
                key = next(self._keys)
                self._in_flight[key] = (publication, self._publish(session, key, publication))
            if len(self._queue) < self.config.publish.buffer_size:
                self._room.set()

    def _publish(
        self, session: ApplicationSession, key: int, pub: Publication
    ) -> asyncio.Future[Any]:
        """Publish with acknowledgement; settle it in a callback (no task per event)."""
        sent = time.perf_counter()
        span = _publish_span(pub) if tracing.tracer is not None else None
        try:
            future: asyncio.Future[Any] = session.publish(
                pub.topic,
                pub.envelope.payload,
                options=_publish_options(pub),
                **pub.envelope.meta(),
            )
        except Exception as exc:
            future = asyncio.get_running_loop().create_future()
            future.set_exception(exc)
        settled = functools.partial(self._settled, session, key, pub, sent, span)
        future.add_done_callback(settled)
        return future

    def _settled(
        self,
        session: ApplicationSession,
        key: int,
        pub: Publication,
        sent: float,
        span: Any,
        done: asyncio.Future[Any],
    ) -> None:
        exc = asyncio.CancelledError() if done.cancelled() else done.exception()
        envelope = pub.envelope
        if exc is None:
            if span is not None:
                span.end()
            self.stats.published += 1
            self.metrics.acknowledged(envelope.name, envelope.ts, sent)
            self.sequencer.published(envelope.id)
            self.published.add(pub, done.result())
            self._answer(envelope.id, Ack(envelope.id, True))
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "published event %s '%s' on '%s'",
                    envelope.id,
                    envelope.name,
                    pub.topic,
                    extra=tracing.log_extra(envelope.id, envelope.trace),
                )
        elif _connection_lost(exc, session):
            if span is not None:  # requeued: the next attempt is a span of its own
                tracing.fail(span, "connection_lost", "the router connection was lost")
            return  # recovery puts it back in order
        else:
            if span is not None:
                tracing.fail(span, type(exc).__name__, str(exc))
            self.stats.rejected += 1
            log.error(
                "router refused event %s '%s' on '%s': %s",
                envelope.id,
                envelope.name,
                pub.topic,
                exc,
                extra=tracing.log_extra(envelope.id, envelope.trace),
            )
            self.sequencer.abandoned(pub.envelope.id)
            self._answer(pub.envelope.id, Ack(pub.envelope.id, False, f"router refused: {exc}"))
        self._in_flight.pop(key, None)
        self._work.set()

    # -- session life cycle ----------------------------------------------

    async def on_join(self, session: ApplicationSession, details: Any) -> None:
        self.stats.connects += 1
        if self._recovering is not None:
            await self._recovering
        self._session = session
        for procedure, uri in (
            (self.snapshot, STATS_PROCEDURE),
            (self.published.query, PUBLISHED_PROCEDURE),
        ):
            try:
                await session.register(procedure, uri)
            except Exception as exc:  # another bridge holds it; stats stay in the log
                log.warning("could not register %s: %s", uri, exc)
        log.info(
            "connected to router (session %s); %d events waiting", details.session, len(self._queue)
        )
        self._work.set()

    def on_leave(self, session: ApplicationSession, details: Any) -> None:
        if session is not self._session:
            return
        self._session = None
        log.warning(
            "router connection lost (%s); buffering events until it is back",
            getattr(details, "reason", details),
        )
        self._recovering = asyncio.ensure_future(self._recover())

    async def _recover(self) -> None:
        """Put unacknowledged publishes back at the head of the queue, in their order."""
        pending = [future for _, future in self._in_flight.values()]
        if pending:  # the lost session fails them all; wait until each has settled
            await asyncio.wait(pending, timeout=5)
        lost = [pub for _, (pub, _) in sorted(self._in_flight.items())]
        self._in_flight.clear()
        self._queue.extendleft(reversed(lost))
        self.stats.requeued += len(lost)
        if lost:
            log.info("requeued %d unacknowledged events for redelivery in order", len(lost))
        self._recovering = None
        self._work.set()

    def snapshot(self) -> dict[str, Any]:
        session = self._session
        return {
            **self.stats.as_dict(
                buffered=len(self._queue),
                in_flight=len(self._in_flight),
                connected=session is not None and session.is_attached(),
            ),
            "intake_running": self._socket is not None and self.intake_error is None,
            "intake_error": self.intake_error,
            **{f"seq_{key}": value for key, value in vars(self.sequencer.stats).items()},
        }

    # -- run ----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        context = zmq.asyncio.Context()
        socket = self._socket = context.socket(zmq.ROUTER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVHWM, self.config.publish.buffer_size)
        # a sender that reconnects under its routing id (the API's relay) takes it over
        socket.setsockopt(zmq.ROUTER_HANDOVER, 1)
        authenticator = None
        if self.config.zmq.curve_secret_key is None:  # validated: only with the loud opt-out
            curve.serve_unauthenticated(socket, self.config.zmq.bind)
        else:
            authenticator = curve.serve(
                context,
                socket,
                self.config.zmq.curve_secret_key.get_secret_value(),
                self.config.zmq.curve_clients,
            )
            log.info("CURVE on: %d allowed sender keys", len(self.config.zmq.curve_clients))
        try:
            socket.bind(self.config.zmq.bind)
        except zmq.ZMQError as exc:
            raise ConfigError(
                f"zmq.bind: cannot bind {self.config.zmq.bind} ({exc}); is another bridge "
                "running there? Choose a free endpoint"
            ) from None
        log.info(
            "listening for events on %s; routes: %s",
            self.config.zmq.bind,
            ", ".join(sorted(self.config.routes)),
        )
        leaving = asyncio.Event()
        connection = asyncio.ensure_future(
            stay_connected(
                self.config.router, leaving, on_join=self.on_join, on_leave=self.on_leave
            )
        )
        endpoint = metrics.serve(self.metrics.registry, self.config.metrics, "bridge")
        receive = asyncio.ensure_future(self.receive(socket))
        receive.add_done_callback(self._intake_ended)
        pump = asyncio.ensure_future(self.pump())
        gaps = asyncio.ensure_future(self.expire_gaps())
        try:
            await stop.wait()
        finally:
            self._stopping = True
            receive.cancel()  # take nothing new, deliver what we hold
            await asyncio.gather(receive, return_exceptions=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drain(), timeout=5)
            stats = self.snapshot()
            if stats["buffered"] or stats["in_flight"]:
                log.error(
                    "shutting down with %d buffered and %d unacknowledged events undelivered",
                    stats["buffered"],
                    stats["in_flight"],
                )
            leaving.set()
            await connection
            pump.cancel()
            gaps.cancel()
            await asyncio.gather(pump, gaps, return_exceptions=True)
            socket.close()
            if authenticator is not None:
                authenticator.stop()
            context.term()
            if endpoint is not None:
                endpoint.close()
            log.info("stopped: %s", stats)

    async def _drain(self) -> None:
        while (self._queue or self._in_flight) and self._session is not None:
            await asyncio.sleep(0.01)


def run(config: BridgeConfig, schemas: EventSchemas | None = None) -> None:
    """Run the bridge until SIGTERM/SIGINT."""
    tracing.setup("bridge")
    bridge = Bridge(config, schemas)
    run_until_signalled(bridge.run)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sandbar-bridge", description="ZeroMQ → WAMP bridge")
    parser.add_argument(
        "config",
        nargs="?",
        type=Path,
        default=DEFAULT_PATH,
        help=f"bridge YAML file (default: {DEFAULT_PATH})",
    )
    parser.add_argument(
        "--check", action="store_true", help="validate the config (no secrets needed) and exit"
    )
    parser.add_argument(
        "--topics-app",
        default=app_spec(),
        help=f"the TopicRouter every route's topic must be declared in (env {APP_VAR})",
    )
    metrics.add_arguments(parser, "bridge")
    args = parser.parse_args(argv)
    setup_logging(service="bridge")
    unset: list[str] = []
    try:
        if args.check:
            env, unset = stand_ins(args.config)
            config = load_config(args.config, env, check_only=True)
            if config.zmq.keyless:
                unset.append("zmq.curve_keys")
        else:
            ensure_backend_secret()
            config = load_config(args.config)
            tracing.check()
            served = metrics.settings_from(args, "bridge", config.metrics)
            config = config.model_copy(update={"metrics": served})
        check_routes(config, args.topics_app, str(args.config))
        schemas = load_event_schemas(args.config, args.topics_app)
    except ConfigError as exc:
        print(f"sandbar-bridge: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.check:
        skipped = f"; not set, so not checked: {', '.join(unset)}" if unset else ""
        print(
            f"{args.config}: OK ({len(config.routes)} routes, topics app {args.topics_app}, "
            f"{len(schemas)} event schemas{skipped})"
        )
        return
    try:
        run(config, schemas)
    except ConfigError as exc:
        print(f"sandbar-bridge: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
