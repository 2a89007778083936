"""The topics service's journal: who was connected, subscribed to what, and every
authorization decision, with times, so ``inspect.why_not`` answers from records.

It lives in this process's memory, bounded in size and age (TopicsConfig
``journal_size``/``journal_seconds`` for sessions and subscriptions,
``decision_log_size``/``decision_log_seconds`` for decisions): writing a row to a
database on every subscribe would put a write on the authorizer's hot path, and the
API's database is the API's. The price: a restart loses the journal, and a replica
knows only what it heard since it started (:attr:`Journal.since`; sessions it found
already connected have ``since`` None). Every replica hears the router's meta events
itself; decisions, which each replica makes for its share, are shared in batches
(topics/journal_feed.py), so every replica holds the merged log.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar


def subscription_matches(uri: str, match: str, topic: str) -> bool:
    """Whether a subscription to ``uri`` with WAMP ``match`` receives events on ``topic``:
    exact is equality, prefix is a string prefix, wildcard is equal length with empty
    components matching any one component."""
    if match == "prefix":
        return topic.startswith(uri)
    if match == "wildcard":
        wanted, parts = uri.split("."), topic.split(".")
        return len(wanted) == len(parts) and all(
            w in ("", p) for w, p in zip(wanted, parts, strict=True)
        )
    return uri == topic


def _covers(
    since: float | None, until: float | None, at: float, records_since: float
) -> bool | None:
    """Whether a span (``since`` None: open when records began) includes the time ``at``."""
    if until is not None and until < at:
        return False
    if since is not None:
        return since <= at
    return True if records_since <= at else None


def _before(since: float | None, at: float) -> bool:
    return since is None or since < at


@dataclass
class SessionSpan:
    """A session, from its join (None: already connected when records began) to its leave."""

    session: int
    authid: str | None
    authrole: str | None
    transport: dict[str, Any]
    since: float | None
    until: float | None = None

    def covers(self, at: float, records_since: float) -> bool | None:
        """Connected at ``at``: True, False, or None when records do not tell."""
        return _covers(self.since, self.until, at, records_since)

    def as_dict(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "authid": self.authid,
            "authrole": self.authrole,
            "transport": self.transport,
            "since": self.since,
            "until": self.until,
        }


@dataclass
class SubscriptionSpan:
    """A session's membership of one router subscription (``uri``, ``match``)."""

    session: int
    subscription: int
    uri: str
    match: str
    since: float | None
    until: float | None = None

    def covers(self, at: float, records_since: float) -> bool | None:
        """Subscribed at ``at``: True, False, or None when records do not tell."""
        return _covers(self.since, self.until, at, records_since)

    def as_dict(self) -> dict[str, Any]:
        return {
            "subscription": self.subscription,
            "uri": self.uri,
            "match": self.match,
            "since": self.since,
            "until": self.until,
        }


@dataclass(frozen=True)
class DecisionRecord:
    """One authorization decision, by the replica that made it."""

    at: float
    session: int | None
    authid: str | None
    action: str
    uri: str
    match: str
    allow: bool
    reason: str | None
    replica: str

    def as_row(self) -> list[Any]:
        """Compact, for the batches replicas share."""
        return [self.at, self.session, self.authid, self.action, self.uri, self.match,
                self.allow, self.reason]  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


S = TypeVar("S", SessionSpan, SubscriptionSpan)


@dataclass
class _Entry(Generic[S]):
    span: S
    noted: float  # when last looked at; the table is kept in this order


@dataclass
class Spans(Generic[S]):
    """Bounded intervals: at most ``size`` (the oldest noted go first, open or not), and
    closed ones are dropped ``seconds`` after they ended; open ones stay (they are now)."""

    size: int
    seconds: float
    clock: Callable[[], float] = time.time
    _table: OrderedDict[int, _Entry[S]] = field(default_factory=OrderedDict)
    _keys: Iterator[int] = field(default_factory=itertools.count)

    def add(self, span: S) -> int:
        key = next(self._keys)
        self._table[key] = _Entry(span, self.clock())
        self.prune()
        return key

    def close(self, key: int, at: float) -> S | None:
        entry = self._table.get(key)
        if entry is None:
            return None
        entry.span.until, entry.noted = at, self.clock()
        self._table.move_to_end(key)
        return entry.span

    def get(self, key: int) -> S | None:
        entry = self._table.get(key)
        return entry.span if entry is not None else None

    def prune(self) -> None:
        while len(self._table) > self.size:
            self._table.popitem(last=False)
        now = self.clock()
        cutoff = now - self.seconds
        for _ in range(len(self._table)):
            key, entry = next(iter(self._table.items()))
            if entry.noted >= cutoff:
                return
            if entry.span.until is None:  # still open: keep it, look again later
                entry.noted = now
                self._table.move_to_end(key)
            else:
                del self._table[key]

    def __iter__(self) -> Iterator[S]:
        return iter([entry.span for entry in self._table.values()])

    def __len__(self) -> int:
        return len(self._table)


@dataclass
class DecisionLog:
    """The newest ``size`` decisions, none older than ``seconds``."""

    size: int
    seconds: float
    clock: Callable[[], float] = time.time
    _records: deque[DecisionRecord] = field(init=False)

    def __post_init__(self) -> None:
        self._records = deque(maxlen=self.size)

    def add(self, record: DecisionRecord) -> None:
        self._records.append(record)
        cutoff = self.clock() - self.seconds
        while self._records and self._records[0].at < cutoff:
            self._records.popleft()

    def newest(self, keep: Callable[[DecisionRecord], bool], limit: int) -> list[DecisionRecord]:
        """Newest first (batches from other replicas arrive late: sorted by time here)."""
        found = [r for r in self._records if r.at >= self.clock() - self.seconds and keep(r)]
        return sorted(found, key=lambda r: r.at, reverse=True)[:limit]

    def __len__(self) -> int:
        return len(self._records)


class Journal:
    """Sessions, subscriptions and decisions, as this replica heard them (see the module)."""

    def __init__(
        self,
        size: int = 10_000,
        seconds: float = 3600.0,
        decisions: int = 10_000,
        decision_seconds: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock
        self.since = clock()  # no records before this
        self.sessions: Spans[SessionSpan] = Spans(size, seconds, clock)
        self.subscriptions: Spans[SubscriptionSpan] = Spans(size, seconds, clock)
        self.decisions = DecisionLog(decisions, decision_seconds, clock)
        # open spans by session (and subscription) → key; emptied as they close, so they
        # hold no more than the router's live sessions and subscriptions
        self._open_sessions: dict[int, int] = {}
        self._open_subscriptions: dict[int, dict[int, int]] = {}  # session → sub → key

    # -- recording (from the router's meta events) -------------------------------------

    def joined(self, details: dict[str, Any], at: float | None) -> None:
        """A session joined at ``at`` (None: found connected, time unknown)."""
        session = int(details["session"])
        if session in self._open_sessions:
            return
        transport = details.get("transport") or {}
        span = SessionSpan(
            session,
            details.get("authid"),
            details.get("authrole"),
            {
                "type": transport.get("channel_framing") or transport.get("type"),
                "peer": transport.get("peer"),
            },
            at,
        )
        self._open_sessions[session] = self.sessions.add(span)

    def left(self, session: int, at: float) -> None:
        key = self._open_sessions.pop(session, None)
        if key is not None:
            self.sessions.close(key, at)
        for subscription in list(self._open_subscriptions.get(session, ())):
            self.unsubscribed(session, subscription, at)

    def subscribed(
        self, session: int, subscription: int, uri: str, match: str, at: float | None
    ) -> None:
        if subscription in self._open_subscriptions.get(session, ()):
            return
        span = SubscriptionSpan(session, subscription, uri, match, at)
        key = self.subscriptions.add(span)
        self._open_subscriptions.setdefault(session, {})[subscription] = key

    def unsubscribed(self, session: int, subscription: int, at: float) -> None:
        held = self._open_subscriptions.get(session, {})
        key = held.pop(subscription, None)
        if not held:
            self._open_subscriptions.pop(session, None)
        if key is not None:
            self.subscriptions.close(key, at)

    def decided(self, record: DecisionRecord) -> None:
        self.decisions.add(record)

    # -- reading ------------------------------------------------------------------------

    def open_sessions(self) -> set[int]:
        return set(self._open_sessions)

    def reconcile(self, live: set[int], held: set[tuple[int, int]] | None, at: float) -> None:
        """Close the open spans, begun before ``at``, that the router no longer has (they
        ended while this replica was away); ``held`` None: subscriptions not listed."""
        for session in list(self._open_sessions):
            span = self.sessions.get(self._open_sessions[session])
            if session not in live and (span is None or _before(span.since, at)):
                self.left(session, at)
        if held is None:
            return
        opened = [
            (s, sub, key)
            for s, subs in self._open_subscriptions.items()
            for sub, key in subs.items()
        ]
        for session, subscription, key in opened:
            span_ = self.subscriptions.get(key)
            if (session, subscription) not in held and (span_ is None or _before(span_.since, at)):
                self.unsubscribed(session, subscription, at)

    def sessions_of(
        self, authid: str | None = None, session: int | None = None
    ) -> list[SessionSpan]:
        return [
            s
            for s in self.sessions
            if (authid is None or s.authid == authid) and (session is None or s.session == session)
        ]

    def subscriptions_of(self, sessions: Iterable[int]) -> list[SubscriptionSpan]:
        wanted = set(sessions)
        return [s for s in self.subscriptions if s.session in wanted]
