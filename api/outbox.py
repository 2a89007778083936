"""The transactional outbox: events commit with the change that causes them, then reach
the bridge for sure.

* ``record`` writes the event in the caller's transaction, numbered per topic
  (``seq``, in commit order: a row lock on the topic's counter orders writers).
* After commit the event is handed at once to this process's :class:`Relay`,
  which sends it to the bridge and marks it delivered when the bridge acknowledges
  it (the bridge does so only once the router has acknowledged the publish).
* Every row carries a lease; a row not acknowledged when its lease runs out (the
  bridge was away, the worker died after commit) is claimed by whichever
  process's relay gets there first and sent again, with backoff. The bridge drops
  resends of what it already published.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import zmq
from sqlalchemy import Connection, Engine, and_, case, delete, func, insert, select, update

from api.db import outbox, outbox_epoch, topic_seqs, upsert
from bridge.curve import connect_as_client
from bridge.envelope import Ack, Envelope, MalformedFrame
from bridge.routes import RouteTable

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


# -- writing -----------------------------------------------------------------------


def next_seq(conn: Connection, topic: str) -> int:
    """Take the next number of ``topic``; the row lock it takes is held until commit."""
    statement = upsert(conn, topic_seqs).values(topic=topic, seq=1)
    statement = statement.on_conflict_do_update(
        index_elements=[topic_seqs.c.topic], set_={"seq": topic_seqs.c.seq + 1}
    ).returning(topic_seqs.c.seq)
    return int(conn.execute(statement).scalar_one())


def record(
    conn: Connection,
    routes: RouteTable,
    name: str,
    payload: dict[str, Any],
    lease_seconds: float,
    epoch: str | None = None,
) -> Envelope:
    """Write one event into the outbox within ``conn``'s transaction; return its envelope."""
    envelope = Envelope(name=name, payload=payload, ack=True, epoch=epoch)
    try:
        publication = routes.resolve(envelope)
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    except MalformedFrame as exc:
        raise ValueError(f"event '{name}' cannot be sent: {exc.detail}") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"event '{name}': payload is not JSON-serialisable ({exc})") from None
    seq = next_seq(conn, publication.topic)
    audience = {k: v for k, v in publication.options.items() if k != "retain"}
    conn.execute(
        insert(outbox).values(
            event_id=envelope.id,
            name=name,
            topic=publication.topic,
            seq=seq,
            ts=envelope.ts,
            payload=body,
            audience=json.dumps(audience) if audience else None,
            lease_until=envelope.ts + int(lease_seconds * 1000),
            attempts=1,
        )
    )
    return replace(envelope, topic=publication.topic, seq=seq)


@dataclass
class _Unit:
    conn: Connection
    envelopes: list[Envelope] = field(default_factory=list)


_current: contextvars.ContextVar[_Unit | None] = contextvars.ContextVar("outbox_unit", default=None)


class Outbox:
    """Records events with the caller's changes and hands them to the relay after commit."""

    def __init__(self, engine: Engine, routes: RouteTable, settings: OutboxSettings) -> None:
        self.engine, self.routes, self.settings = engine, routes, settings
        self.epoch = outbox_epoch(engine)
        self.relay = Relay(engine, settings, self.epoch)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One database transaction for a change and the events it causes."""
        with self.engine.begin() as conn:
            unit = _Unit(conn)
            token = _current.set(unit)
            try:
                yield conn
            finally:
                _current.reset(token)
        self.relay.submit(unit.envelopes)  # committed: send now (the low-latency path)

    def emit(self, name: str, payload: dict[str, Any]) -> None:
        """Record an event in the current transaction, or in one of its own."""
        unit = _current.get()
        if unit is None:
            with self.transaction():
                self.emit(name, payload)
            return
        lease = self.settings.lease_seconds
        unit.envelopes.append(record(unit.conn, self.routes, name, payload, lease, self.epoch))


# -- relaying -------------------------------------------------------------------------


class Relay:
    """One per process: sends committed events to the bridge and records its acks.

    The thread owns its ZeroMQ DEALER socket (sockets are not thread-safe); request
    threads hand it envelopes through a queue and a wake-up pipe.
    """

    def __init__(self, engine: Engine, settings: OutboxSettings, epoch: str | None = None) -> None:
        self.engine, self.settings, self.epoch = engine, settings, epoch
        self._queue: queue.SimpleQueue[Envelope] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._wake_w = -1
        self._stopping = threading.Event()

    def submit(self, envelopes: list[Envelope]) -> None:
        if not envelopes:
            return
        self.start()
        for envelope in envelopes:
            self._queue.put(envelope)
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"!")

    def start(self) -> None:
        """Start this process's relay thread (again after a fork)."""
        with self._lock:
            if self._pid == os.getpid():
                return
            read_fd, self._wake_w = os.pipe()
            os.set_blocking(read_fd, False)
            os.set_blocking(self._wake_w, False)
            self._pid = os.getpid()
            threading.Thread(
                target=self._run, args=(read_fd,), name="outbox-relay", daemon=True
            ).start()

    def stop(self) -> None:
        self._stopping.set()

    def _run(self, wake_fd: int) -> None:
        socket: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        if self.settings.curve_server_key:
            connect_as_client(
                socket, self.settings.curve_server_key, self.settings.curve_secret_key or ""
            )
        socket.connect(self.settings.bridge_endpoint)
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        poller.register(wake_fd, zmq.POLLIN)
        next_scan = next_prune = 0.0
        while not self._stopping.is_set():
            try:
                ready = dict(poller.poll(timeout=int(self.settings.scan_interval * 1000)))
                if wake_fd in ready:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_fd, 65536)
                self._send(socket, self._drain_queue())
                if socket in ready:
                    self._record_acks(socket)
                if time.monotonic() >= next_scan:
                    next_scan = time.monotonic() + self.settings.scan_interval
                    self._send(socket, self._claim_expired())
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + self.settings.prune_interval
                    self._prune()
            except Exception:  # the relay must outlive a database hiccup
                log.exception("outbox relay error; retrying")
                time.sleep(self.settings.scan_interval)

    def _drain_queue(self) -> list[Envelope]:
        envelopes = []
        with contextlib.suppress(queue.Empty):
            while True:
                envelopes.append(self._queue.get_nowait())
        return envelopes

    def _send(self, socket: zmq.Socket[bytes], envelopes: list[Envelope]) -> None:
        if not envelopes:
            return
        floors = self._floors({e.topic for e in envelopes if e.topic is not None})
        for envelope in envelopes:
            floor = floors.get(envelope.topic or "", envelope.seq)
            try:
                socket.send(replace(envelope, floor=floor).to_bytes(), flags=zmq.NOBLOCK)
            except zmq.Again:
                log.warning(
                    "bridge at %s is not taking events; the outbox resends later",
                    self.settings.bridge_endpoint,
                )
                return

    def _floors(self, topics: set[str]) -> dict[str, int]:
        """Per topic, the lowest seq not yet acknowledged: the bridge orders from there."""
        if not topics:
            return {}
        query = (
            select(outbox.c.topic, func.min(outbox.c.seq))
            .where(
                outbox.c.topic.in_(topics),
                outbox.c.delivered_at.is_(None),
                outbox.c.failed.is_(None),
            )
            .group_by(outbox.c.topic)
        )
        with self.engine.connect() as conn:
            return {topic: int(seq) for topic, seq in conn.execute(query)}

    def _record_acks(self, socket: zmq.Socket[bytes]) -> None:
        delivered: list[str] = []
        failed: list[Ack] = []
        with contextlib.suppress(zmq.Again):
            while True:
                ack = Ack.from_bytes(socket.recv(flags=zmq.NOBLOCK))
                if ack.ok:
                    delivered.append(ack.id)
                else:
                    failed.append(ack)
        with self.engine.begin() as conn:
            if delivered:
                conn.execute(
                    update(outbox)
                    .where(outbox.c.event_id.in_(delivered))
                    .values(delivered_at=now_ms())
                )
            for ack in failed:
                log.error("the bridge refused event %s for good: %s", ack.id, ack.error)
                conn.execute(
                    update(outbox)
                    .where(outbox.c.event_id == ack.id)
                    .values(failed=ack.error or "refused")
                )

    def _claim_expired(self, batch: int = 500) -> list[Envelope]:
        """Lease the oldest unacknowledged rows whose lease ran out; another process's
        relay will not take them until this new lease ends (no resend storms)."""
        now = now_ms()
        due = (
            select(outbox.c.id)
            .where(
                outbox.c.delivered_at.is_(None),
                outbox.c.failed.is_(None),
                outbox.c.lease_until < now,
            )
            .order_by(outbox.c.id)
            .limit(batch)
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
        with self.engine.begin() as conn:
            rows = conn.execute(
                update(outbox)
                .where(and_(outbox.c.id.in_(due), outbox.c.lease_until < now))
                .values(lease_until=now + backoff, attempts=outbox.c.attempts + 1)
                .returning(outbox)
            ).all()
        if rows:
            log.info("resending %d unacknowledged events", len(rows))
        return [
            Envelope(
                name=r.name,
                payload=json.loads(r.payload),
                id=r.event_id,
                ts=r.ts,
                topic=r.topic,
                seq=r.seq,
                epoch=self.epoch,
                ack=True,
            )
            for r in sorted(rows, key=lambda r: r.id)
        ]

    def _prune(self) -> None:
        """Drop delivered rows past the retention age, and beyond the retention count."""
        cutoff = now_ms() - int(self.settings.retention_seconds * 1000)
        with self.engine.begin() as conn:
            conn.execute(
                delete(outbox).where(outbox.c.delivered_at.is_not(None), outbox.c.ts < cutoff)
            )
            keep_from = conn.execute(
                select(outbox.c.id)
                .order_by(outbox.c.id.desc())
                .offset(self.settings.retention_rows)
                .limit(1)
            ).scalar_one_or_none()
            if keep_from is not None:
                conn.execute(
                    delete(outbox).where(
                        outbox.c.delivered_at.is_not(None), outbox.c.id <= keep_from
                    )
                )
