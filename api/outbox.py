"""The transactional outbox: events commit with the change that causes them, then reach
the bridge for sure.

* ``record`` writes the event in the caller's transaction, numbered per topic
  (``seq``, in commit order: a row lock on the topic's counter orders writers).
* After commit the request thread sends it to the bridge at once, asking for the
  acknowledgement to go to this process's :class:`Relay`, which marks the row
  delivered (the bridge acks only once the router has acknowledged the publish).
* Every row carries a lease; a row not acknowledged when its lease runs out (the
  bridge was away, the worker died after commit) is claimed by whichever
  process's relay gets there first and sent again, with backoff. The bridge drops
  resends of what it already published.

On PostgreSQL with several API hosts nothing here is host-local: the counter row's lock
(``UPDATE … RETURNING`` in the writing transaction, held until commit) makes a topic's
writers on every host take numbers in commit order, and relays claim expired leases
with ``FOR UPDATE SKIP LOCKED`` (api/backends.py), so no row is claimed twice.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import zmq
from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.exc import OperationalError

from api.backends import backend_of, begin_write
from api.db import outbox, outbox_epoch, unacknowledged
from api.metrics import ApiMetrics, count_names
from bridge.client import EventSender
from bridge.curve import connect_as_client
from bridge.envelope import Ack, Envelope, MalformedFrame
from bridge.routes import RouteTable
from sandbar import jsoncodec, tracing

log = logging.getLogger("sandbar.api.outbox")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class OutboxSettings:
    bridge_endpoint: str
    curve_server_key: str | None = None  # CURVE: the bridge's public key ...
    curve_secret_key: str | None = None  # ... and this sender's secret key
    lease_seconds: float = 3.0  # first resend after this long without an ack; then doubles
    max_lease_seconds: float = 60.0
    scan_interval: float = 0.5  # how often a relay looks for expired leases
    retention_seconds: float = 24 * 3600.0  # delivered rows are kept this long for catch-up ...
    retention_rows: int = 100_000  # ... and at most this many
    prune_interval: float = 60.0
    ack_flush_seconds: float = 0.1  # acks are marked delivered in batches this far apart


# -- statements, built once (building one per call costs more than running it) ------

_FLOORS = (
    select(outbox.c.topic, func.min(outbox.c.seq))
    .where(outbox.c.topic.in_(bindparam("topics", expanding=True)), unacknowledged)
    .group_by(outbox.c.topic)
)
# both return the names of the rows they changed: what the acknowledged/refused counts say
# (an ack of a resend already marked changes nothing and counts nothing)
_MARK_DELIVERED = (
    update(outbox)
    .where(outbox.c.event_id.in_(bindparam("ids", expanding=True)), unacknowledged)
    .values(delivered_at=bindparam("at"))
    .returning(outbox.c.name)
)
_MARK_FAILED = (
    update(outbox)
    .where(outbox.c.event_id == bindparam("id"), unacknowledged)
    .values(failed=bindparam("error"))
    .returning(outbox.c.name)
)


_BACKLOG = select(func.count(), func.min(outbox.c.ts)).where(unacknowledged)


def backlog(conn: Connection) -> dict[str, Any]:
    """Events committed and not yet acknowledged by the bridge, and the oldest one's age in
    seconds (None: none waiting): one query over the unacknowledged rows' partial index,
    cheap enough for every health probe (``GET /healthz``, ``GET /inspect/api/outbox``)."""
    count, oldest = conn.execute(_BACKLOG).one()
    age = round(max(0, now_ms() - int(oldest)) / 1000, 3) if oldest is not None else None
    return {"backlog": int(count), "oldest_age_s": age}


# -- writing -----------------------------------------------------------------------


def floors(conn: Connection, topics: set[str]) -> dict[str, int]:
    """Per topic, the lowest seq not yet acknowledged: the bridge orders from there."""
    if not topics:
        return {}
    rows = conn.execute(_FLOORS, {"topics": sorted(topics)})
    return {topic: int(seq) for topic, seq in rows}


def record(
    conn: Connection,
    routes: RouteTable,
    name: str,
    payload: dict[str, Any],
    lease_seconds: float,
    epoch: str | None = None,
    others: dict[str, Any] | None = None,
) -> Envelope:
    """Write one event into the outbox within ``conn``'s transaction; return its envelope."""
    envelope = Envelope(
        name=name, payload=payload, ack=True, epoch=epoch, others=others, trace=tracing.for_event()
    )
    try:
        publication = routes.resolve(envelope)
        body = jsoncodec.dumps(payload).decode()
    except MalformedFrame as exc:
        raise ValueError(f"event '{name}' cannot be sent: {exc.detail}") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"event '{name}': payload is not JSON-serialisable ({exc})") from None
    audience = {k: v for k, v in publication.options.items() if k != "retain"}
    if others is not None:  # toOthers: kept for resends and for GET /events
        audience["others"] = others
    # The floor comes with the number, read in the transaction that holds the topic's
    # counter: by the send it can only be lower than the truth. The bridge uses it only
    # for a topic the router has no retained event of (both restarted); a floor
    # acknowledged meanwhile then holds the topic until the gap timeout (15 s). It never
    # makes the bridge skip an event.
    seq, floor = backend_of(conn).insert_event(
        conn,
        {
            "event_id": envelope.id,
            "name": name,
            "topic": publication.topic,
            "ts": envelope.ts,
            "payload": body,
            "audience": json.dumps(audience) if audience else None,
            "lease_until": envelope.ts + int(lease_seconds * 1000),
            "trace": envelope.trace,
        },
    )
    return replace(envelope, topic=publication.topic, seq=seq, floor=floor)


@dataclass
class _Unit:
    conn: Connection
    envelopes: list[Envelope] = field(default_factory=list)


_current: contextvars.ContextVar[_Unit | None] = contextvars.ContextVar("outbox_unit", default=None)


class Outbox:
    """Records events with the caller's changes and sends them once committed."""

    def __init__(
        self,
        engine: Engine,
        routes: RouteTable,
        settings: OutboxSettings,
        metrics: ApiMetrics | None = None,
    ) -> None:
        self.engine, self.routes, self.settings = engine, routes, settings
        self.metrics = metrics or ApiMetrics()
        self.epoch = outbox_epoch(engine)
        self.relay = Relay(engine, settings, self.epoch, self.metrics)
        #: the request threads' own sockets: a hand-off to the relay thread would wait for
        #: the GIL until the request is answered (~0.5 ms)
        self.sender = EventSender(
            settings.bridge_endpoint,
            curve_server_key=settings.curve_server_key,
            curve_secret_key=settings.curve_secret_key,
        )
        self._warned_at = -1e9

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One database transaction for a change and the events it causes."""
        with self._spanning(), begin_write(self.engine) as conn:
            unit = _Unit(conn)
            token = _current.set(unit)
            try:
                yield conn
            finally:
                _current.reset(token)
        count_names(self.metrics.committed, (e.name for e in unit.envelopes))
        if log.isEnabledFor(logging.DEBUG):
            for e in unit.envelopes:
                extra = tracing.log_extra(e.id, e.trace)
                log.debug(
                    "committed event %s '%s' (%s #%s)", e.id, e.name, e.topic, e.seq, extra=extra
                )
        self._send_committed(unit.envelopes)

    def _spanning(self) -> contextlib.AbstractContextManager[Any]:
        """The ``commit`` span (tracing on): the events recorded inside carry its context."""
        return tracing.spanning("commit", **{"db.system.name": self.engine.dialect.name})

    def _send_committed(self, envelopes: list[Envelope]) -> None:
        """Send now, the bridge's acks going to this process's relay; whatever does not
        leave now is resent by a relay once its lease ends."""
        if not envelopes:
            return
        try:  # committed already: nothing here may fail the request
            reply_to = self.relay.start()
            for envelope in envelopes:
                self.sender.send_envelope(replace(envelope, reply_to=reply_to))
                self.metrics.sent.labels(envelope.name).inc()
        except Exception as exc:
            if time.monotonic() - self._warned_at > 10:  # once in a while, not per request
                self._warned_at = time.monotonic()
                log.warning("event not sent now (%s); the outbox resends it later", exc)

    def emit(
        self, name: str, payload: dict[str, Any], others: dict[str, Any] | None = None
    ) -> Envelope:
        """Record an event in the current transaction, or in one of its own; return it."""
        unit = _current.get()
        if unit is None:
            with self.transaction():
                return self.emit(name, payload, others)
        lease = self.settings.lease_seconds
        envelope = record(unit.conn, self.routes, name, payload, lease, self.epoch, others)
        unit.envelopes.append(envelope)
        return envelope


# -- relaying -------------------------------------------------------------------------


class Relay:
    """One per process: records the bridge's acks, and resends what was not acknowledged.

    Request threads send committed events themselves (:meth:`Outbox.transaction`) with
    ``reply_to`` naming this relay's socket, so the acks come here. The thread owns its
    ZeroMQ DEALER socket (sockets are not thread-safe).
    """

    def __init__(
        self,
        engine: Engine,
        settings: OutboxSettings,
        epoch: str | None = None,
        metrics: ApiMetrics | None = None,
    ) -> None:
        self.engine, self.settings, self.epoch = engine, settings, epoch
        self.metrics = metrics or ApiMetrics()
        self._lock = threading.Lock()
        self._pid: int | None = None
        self.identity = ""
        self._stopping = threading.Event()
        self._delivered: list[str] = []  # acknowledged, not yet marked in the database
        self._flush_at: float | None = None
        self._warned_at = -1e9

    def start(self) -> str:
        """Start this process's relay thread (again after a fork); return its socket's
        routing id, the ``reply_to`` of what this process sends."""
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self.identity = f"outbox-relay-{self._pid}-{uuid.uuid4().hex[:12]}"
                connected = threading.Event()
                threading.Thread(
                    target=self._run,
                    args=(self.identity, connected),
                    name="outbox-relay",
                    daemon=True,
                ).start()
                connected.wait(5)  # acks for what is sent next need somewhere to arrive
            return self.identity

    def stop(self) -> None:
        self._stopping.set()

    def _run(self, identity: str, connected: threading.Event) -> None:
        socket: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.ROUTING_ID, identity.encode())
        if self.settings.curve_server_key:
            connect_as_client(
                socket, self.settings.curve_server_key, self.settings.curve_secret_key or ""
            )
        socket.connect(self.settings.bridge_endpoint)
        connected.set()
        next_scan = next_prune = 0.0
        while not self._stopping.is_set():
            try:
                if socket.poll(timeout=self._poll_timeout_ms()):
                    self._read_acks(socket)
                self._flush_delivered()
                if time.monotonic() >= next_scan:
                    next_scan = time.monotonic() + self.settings.scan_interval
                    self._flush_delivered(force=True)  # never resend what is acknowledged
                    self._send(socket, self._claim_expired())
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + self.settings.prune_interval
                    self._prune()
            except OperationalError as exc:  # the database is away: once in a while
                if time.monotonic() - self._warned_at > 10:
                    self._warned_at = time.monotonic()
                    log.warning("outbox relay: database unavailable (%s); retrying", exc.orig)
                time.sleep(self.settings.scan_interval)
            except Exception:  # the relay must outlive a database hiccup
                log.exception("outbox relay error; retrying")
                time.sleep(self.settings.scan_interval)
        with contextlib.suppress(Exception):  # unmarked rows are merely resent later
            self._flush_delivered(force=True)

    def _poll_timeout_ms(self) -> int:
        """Wake for the next scan, or sooner when acks wait to be marked."""
        timeout = self.settings.scan_interval
        if self._flush_at is not None:
            timeout = min(timeout, max(0.0, self._flush_at - time.monotonic()))
        return int(timeout * 1000) + 1

    def _send(self, socket: zmq.Socket[bytes], envelopes: list[Envelope]) -> None:
        for envelope in envelopes:
            try:
                socket.send(envelope.to_bytes(), flags=zmq.NOBLOCK)
                self.metrics.resent.labels(envelope.name).inc()
            except zmq.Again:
                log.warning(
                    "bridge at %s is not taking events; the outbox resends later",
                    self.settings.bridge_endpoint,
                )
                return

    def _read_acks(self, socket: zmq.Socket[bytes]) -> None:
        """Take the bridge's answers; refusals are recorded at once, deliveries in batches
        (one UPDATE for many acks keeps the write lock free for request threads)."""
        failed: list[Ack] = []
        with contextlib.suppress(zmq.Again):
            while True:
                ack = Ack.from_bytes(socket.recv(flags=zmq.NOBLOCK))
                if ack.ok:
                    self._delivered.append(ack.id)
                else:
                    failed.append(ack)
        if self._delivered and self._flush_at is None:
            self._flush_at = time.monotonic() + self.settings.ack_flush_seconds
        if failed:
            with begin_write(self.engine) as conn:
                for ack in failed:
                    log.error("the bridge refused event %s for good: %s", ack.id, ack.error)
                    names = conn.execute(
                        _MARK_FAILED, {"id": ack.id, "error": ack.error or "refused"}
                    ).scalars()
                    count_names(self.metrics.refused, names)

    def _flush_delivered(self, force: bool = False) -> None:
        if not self._delivered or not (force or time.monotonic() >= (self._flush_at or 0)):
            return
        delivered, self._delivered, self._flush_at = self._delivered, [], None
        try:
            self._mark_delivered(delivered)
        except Exception:
            self._delivered[:0] = delivered  # try again at the next flush (e.g. after a
            raise  # deadlock PostgreSQL broke between two relays)

    def _mark_delivered(self, delivered: list[str]) -> None:
        names: list[str] = []
        with begin_write(self.engine) as conn:
            for start in range(0, len(delivered), 500):  # within every database's bind limit
                names += conn.execute(
                    _MARK_DELIVERED, {"ids": delivered[start : start + 500], "at": now_ms()}
                ).scalars()
        count_names(self.metrics.acknowledged, names)  # once committed

    def _claim_expired(self, batch: int = 500) -> list[Envelope]:
        """Lease the oldest unacknowledged rows whose lease ran out; another process's
        relay will not take them until this new lease ends (no resend storms)."""
        now = now_ms()
        due = (
            backend_of(self.engine)
            .skip_locked(  # relays on other hosts skip these
                select(outbox.c.id)
                .where(unacknowledged, outbox.c.lease_until < now)
                .order_by(outbox.c.id)
                .limit(batch)
            )
            .scalar_subquery()
        )
        lease_ms, max_ms = (
            self.settings.lease_seconds * 1000,
            self.settings.max_lease_seconds * 1000,
        )
        backoff = case(  # lease * 2^attempts, capped (portable SQL: no power() in SQLite)
            *[(outbox.c.attempts == n, int(min(lease_ms * 2**n, max_ms))) for n in range(8)],
            else_=int(max_ms),
        )
        with begin_write(self.engine) as conn:
            rows = conn.execute(
                update(outbox)
                .where(and_(outbox.c.id.in_(due), outbox.c.lease_until < now))
                # a BIGINT parameter: unix ms overflow PostgreSQL's INTEGER
                .values(
                    lease_until=literal(now, BigInteger) + backoff, attempts=outbox.c.attempts + 1
                )
                .returning(outbox)
            ).all()
        if not rows:
            return []
        log.info("resending %d unacknowledged events", len(rows))
        with self.engine.connect() as conn:
            floor_of = floors(conn, {r.topic for r in rows})
        return [
            Envelope(
                name=r.name,
                payload=json.loads(r.payload),
                id=r.event_id,
                ts=r.ts,
                topic=r.topic,
                seq=r.seq,
                floor=floor_of.get(r.topic, r.seq),
                epoch=self.epoch,
                ack=True,
                others=json.loads(r.audience).get("others") if r.audience else None,
                trace=r.trace,
            )
            for r in sorted(rows, key=lambda r: r.id)
        ]

    def _prune(self) -> None:
        """Drop delivered rows past the retention age, and beyond the retention count."""
        cutoff = now_ms() - int(self.settings.retention_seconds * 1000)
        self._delete_delivered(outbox.c.ts < cutoff)
        with self.engine.connect() as conn:
            keep_from = conn.execute(
                select(outbox.c.id)
                .order_by(outbox.c.id.desc())
                .offset(self.settings.retention_rows)
                .limit(1)
            ).scalar_one_or_none()
        if keep_from is not None:
            self._delete_delivered(outbox.c.id <= keep_from)

    def _delete_delivered(self, condition: Any, batch: int = 1000) -> None:
        """Delete delivered rows matching ``condition``, a batch per transaction: request
        threads waiting for their turn to write wait for one batch at most."""
        doomed = (
            select(outbox.c.id)
            .where(outbox.c.delivered_at.is_not(None), condition)
            .limit(batch)
            .scalar_subquery()
        )
        while True:
            with begin_write(self.engine) as conn:
                deleted = conn.execute(delete(outbox).where(outbox.c.id.in_(doomed))).rowcount
            if deleted < batch:
                return
