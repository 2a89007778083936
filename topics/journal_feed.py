"""Feeding the journal (topics/journal.py) on every topics replica.

* Sessions and subscriptions: from the router's meta events, which every replica hears
  itself (``wamp.session.on_join/on_leave``, ``wamp.subscription.on_subscribe/
  on_unsubscribe``); those already there when a replica connects are learnt from
  ``wamp.session.list`` and ``wamp.subscription.list``, their start unknown.
* Decisions: each replica decides a share (round-robin) and records its own; it
  publishes them in batches (every ``decision_batch_seconds``, never one publish per
  decision: that would double the router's traffic on subscribes) on the backend topic
  :data:`DECISIONS_TOPIC`, and records the others' batches, so every replica holds the
  merged log and whichever leads answers for all. Browsers cannot subscribe to it
  (``sandbar.*`` is no topic).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from autobahn.wamp.exception import ApplicationError

from sandbar.wamp import ApplicationSession
from topics.journal import DecisionRecord, Journal
from topics.patterns import MAX_URI_LENGTH

log = logging.getLogger("sandbar.topics.journal")

DECISIONS_TOPIC = "sandbar.inspect.decisions"
MAX_BATCH = 200  # rows per publish: a burst goes out in frames of ~220 KB at most (1 MB limit)
MAX_REASON = 500


def replica_name() -> str:
    """This replica in the decision log: host and pid (a session id changes on reconnect)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class JournalFeed:
    def __init__(
        self,
        journal: Journal,
        known: Mapping[int, tuple[str, str]],
        batch_seconds: float = 0.1,
        replica: str | None = None,
    ) -> None:
        """``known``: subscription id → (uri, match), as the service keeps it."""
        self.journal, self.known, self.batch_seconds = journal, known, batch_seconds
        self.replica = replica or replica_name()
        self.wamp: ApplicationSession | None = None
        self._pending: deque[list[Any]] = deque(maxlen=journal.decisions.size)
        self._timer: asyncio.TimerHandle | None = None
        self._learning: asyncio.Task[None] | None = None
        self._attached_once = False

    async def attach(self, session: ApplicationSession) -> None:
        """Subscribe to the meta events and the other replicas' decisions, then learn
        who is already there (in the background: joining the router does not wait)."""
        self.wamp = session
        for handler, topic in (
            (self._joined, "wamp.session.on_join"),
            (self._left, "wamp.session.on_leave"),
            (self._subscribed, "wamp.subscription.on_subscribe"),
            (self._unsubscribed, "wamp.subscription.on_unsubscribe"),
            (self._heard, DECISIONS_TOPIC),
        ):
            await session.subscribe(handler, topic)
        if not self._attached_once:  # records begin once the meta events are heard
            self._attached_once, self.journal.since = True, time.time()
        self._learning = asyncio.ensure_future(self._learn(session))
        self._flush()  # decisions made while the router was away

    # -- meta events --------------------------------------------------------------------

    def _joined(self, details: dict[str, Any]) -> None:
        if isinstance(details, dict) and "session" in details:
            self.journal.joined(details, time.time())

    def _left(self, session_id: int, *_: Any) -> None:
        self.journal.left(int(session_id), time.time())

    async def _subscribed(self, session_id: int, subscription_id: int) -> None:
        at = time.time()  # before any lookup
        where = self.known.get(subscription_id) or await self._lookup(subscription_id)
        if where is not None:
            self.journal.subscribed(int(session_id), int(subscription_id), *where, at)

    def _unsubscribed(self, session_id: int | None, subscription_id: int) -> None:
        if session_id is not None:  # None: the session left (``_left`` closes them all)
            self.journal.unsubscribed(int(session_id), int(subscription_id), time.time())

    async def _lookup(self, subscription_id: int) -> tuple[str, str] | None:
        if self.wamp is None:
            return None
        with contextlib.suppress(ApplicationError):
            details = await self.wamp.call("wamp.subscription.get", subscription_id)
            if details:
                return str(details["uri"]), str(details["match"])
        return None

    async def _learn(self, session: ApplicationSession) -> None:
        """Sessions and subscriptions already there (start unknown). Open spans the router
        no longer has ended while this replica was away (a reconnect): closed now."""
        at = time.time()
        try:
            live = [int(s) for s in await session.call("wamp.session.list") or []]
            self.journal.reconcile(set(live), None, at)
            for session_id in live[: self.journal.sessions.size]:
                details = await session.call("wamp.session.get", session_id)
                if details:
                    self.journal.joined(details, None)
            listed = await session.call("wamp.subscription.list") or {}
            held: set[tuple[int, int]] = set()
            for ids in listed.values():
                for subscription_id in ids:
                    held |= await self._learn_subscription(session, int(subscription_id))
            self.journal.reconcile(set(live), held, at)
            log.info(
                "journal: learnt %d sessions and %d subscriptions already there",
                len(live),
                len(held),
            )
        except ApplicationError as exc:
            log.warning("could not learn the sessions already connected: %s", exc)

    async def _learn_subscription(
        self, session: ApplicationSession, subscription_id: int
    ) -> set[tuple[int, int]]:
        details = await session.call("wamp.subscription.get", subscription_id)
        members = [int(m) for m in await session.call(
            "wamp.subscription.list_subscribers", subscription_id
        ) or []]  # fmt: skip
        if not details:
            return set()
        for member in members:
            uri, match = str(details["uri"]), str(details["match"])
            self.journal.subscribed(member, subscription_id, uri, match, None)
        return {(member, subscription_id) for member in members}

    # -- decisions ----------------------------------------------------------------------

    def decided(
        self,
        details: Mapping[str, Any],
        uri: str,
        action: str,
        options: Mapping[str, Any] | None,
        allow: bool,
        reason: str | None,
    ) -> None:
        """Record one decision here and queue it for the others (one tuple, one timer).
        Never raises: a fault here must not turn into a denial for everyone."""
        try:
            self._decided(details, uri, action, options, allow, reason)
        except Exception:
            log.exception("could not record a decision (the decision stands)")

    def _decided(
        self,
        details: Mapping[str, Any],
        uri: str,
        action: str,
        options: Mapping[str, Any] | None,
        allow: bool,
        reason: str | None,
    ) -> None:
        session = details.get("session")
        authid = details.get("authid")
        record = DecisionRecord(
            time.time(),
            session if isinstance(session, int) and not isinstance(session, bool) else None,
            authid if isinstance(authid, str) else None,
            str(action)[:32],
            str(uri)[:MAX_URI_LENGTH],
            str((options or {}).get("match") or "exact")[:16],
            bool(allow),
            None if reason is None else str(reason)[:MAX_REASON],
            self.replica,
        )
        self.journal.decided(record)
        self._pending.append(record.as_row())
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.batch_seconds, self._flush)

    def _flush(self) -> None:
        self._timer = None
        wamp = self.wamp
        if wamp is None or not wamp.is_attached():
            return  # kept (bounded) until the router is back
        while self._pending:
            rows = [self._pending.popleft() for _ in range(min(MAX_BATCH, len(self._pending)))]
            try:
                wamp.publish(DECISIONS_TOPIC, {"replica": self.replica, "rows": rows})
            except Exception as exc:  # not shared, still recorded here
                log.warning("could not share %d decisions: %s", len(rows), exc)
                return

    def _heard(self, batch: Any, *_: Any, **__: Any) -> None:
        """Another replica's decisions; a malformed batch or row is dropped (logged once)."""
        replica = batch.get("replica") if isinstance(batch, dict) else None
        rows = batch.get("rows") if isinstance(batch, dict) else None
        if not isinstance(replica, str) or not isinstance(rows, list) or replica == self.replica:
            return
        dropped = 0
        for row in rows:
            record = _record(row, replica[:128])
            if record is None:
                dropped += 1
            else:
                self.journal.decided(record)
        if dropped:
            log.warning("dropped %d malformed decisions from replica %s", dropped, replica[:128])


def _record(row: Any, replica: str) -> DecisionRecord | None:
    if not isinstance(row, list) or len(row) != 8:
        return None
    at, session, authid, action, uri, match, allow, reason = row
    if not isinstance(at, int | float) or not isinstance(allow, bool):
        return None
    if not all(isinstance(v, str) for v in (action, uri, match)):
        return None
    if session is not None and not isinstance(session, int):
        return None
    if not (authid is None or isinstance(authid, str)) or not (
        reason is None or isinstance(reason, str)
    ):
        return None
    return DecisionRecord(float(at), session, authid, action, uri, match, allow, reason, replica)
