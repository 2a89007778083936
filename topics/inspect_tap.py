"""The inspector's live tap: events on a topic or pattern, forwarded to the staff sessions
that asked (``inspect.tap.start`` / ``inspect.tap.stop``).

The leader replica subscribes, as the backend session it is, to the pattern (a declared
pattern ``chat.{channel}`` becomes the wildcard ``chat.``; ``chat.`` is a prefix; anything
else an exact URI) and publishes each event it receives on :data:`TAP_TOPIC` with
``eligible=[the staff session]``: no other session gets it, and the authorizer lets only
staff subscribe to that topic at all.

Bounded: each tap forwards at most ``tap_rate`` events a second (bursts of ``tap_burst``);
beyond that events are dropped and counted (``sandbar_topics_inspector_tap_dropped``), and
the next record forwarded says how many were dropped before it (``dropped``). A session
holds at most ``max_taps_per_session`` taps, the service ``max_taps``. A payload is cut at
:data:`MAX_PAYLOAD_BYTES` of JSON. A tap ends when its session leaves or stops it, and
with the leader's connection (a new leader starts with none: the page starts it again).

What a tap cannot see: events the router delivers only to particular sessions or users
(``eligible`` / ``eligible_authid``: a route's ``to_authids``, a welcome ``session.send``
sends) never reach the leader's subscription, nor events that exclude its authid; and the
backend namespaces (``sandbar.*``, ``wamp.*``) and the inspector's own topics are never
forwarded. The leader still receives every event a tap's pattern matches (the bucket bounds
what is forwarded, not what the router sends it): a tap on a busy wildcard costs that stream.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, SubscribeOptions

from sandbar import jsoncodec
from sandbar.uri import COMPONENT, check_uri
from topics.gate import RateLimiter
from topics.inspect_args import invalid
from topics.inspector import PREFIX, TAP_TOPIC
from topics.patterns import MAX_URI_LENGTH, PatternError, TopicPattern

if TYPE_CHECKING:
    from sandbar.wamp import ApplicationSession
    from topics.metrics import TopicsMetrics

log = logging.getLogger("sandbar.topics.inspector")

#: a payload whose JSON is longer is cut to this many bytes (``"truncated": true``)
MAX_PAYLOAD_BYTES = 4096
#: first URI parts a tap never forwards: the router's, the backends', the inspector's own
RESERVED = ("wamp", "sandbar", PREFIX.rstrip("."))
ERROR_TOO_MANY = "sandbar.error.too_many_taps"
CAVEAT = (
    "events addressed to particular users or sessions (a route's to_authids, "
    "eligible_authid, eligible: e.g. a welcome) do not reach the tap: the router delivers "
    "them only to those; sandbar.*, wamp.* and inspect.* topics are never tapped"
)
_META = ("id", "name", "seq", "epoch", "trace")


@dataclass(frozen=True)
class TapPattern:
    source: str
    uri: str  # as subscribed: "chat." for chat.{channel}
    match: str  # exact, prefix or wildcard
    declared: TopicPattern | None = None  # its parameters' rules filter what is forwarded

    def admits(self, topic: str) -> bool:
        if topic.split(".", 1)[0] in RESERVED:
            return False
        return self.declared is None or self.declared.match(topic) is not None


def parse_pattern(pattern: Any) -> TapPattern:
    """``chat.{channel}`` (a declared pattern), ``chat.`` (a prefix), ``chat..typing`` (a
    WAMP wildcard) or ``articles`` (exact); anything else is an invalid_argument."""
    if not isinstance(pattern, str) or not 0 < len(pattern) <= MAX_URI_LENGTH:
        got = f"{len(pattern)} characters" if isinstance(pattern, str) else type(pattern).__name__
        raise invalid(
            f"pattern must be a topic URI or pattern of 1 to {MAX_URI_LENGTH} characters, "
            f"e.g. 'articles', 'chat.{{channel}}' or 'chat.'; got {got}"
        )
    tapped = _parsed(pattern)
    first = tapped.uri.split(".", 1)[0]
    if first in RESERVED:
        raise invalid(
            f"'{first}.*' topics cannot be tapped (the router's, the backends' and the "
            "inspector's own): tap an application topic such as 'articles'"
        )
    return tapped


def _parsed(pattern: str) -> TapPattern:
    try:
        if "{" in pattern or "}" in pattern:
            declared = TopicPattern.compile(pattern)
            uri = ".".join(p if isinstance(p, str) else "" for p in declared.parts)
            return TapPattern(pattern, uri, "wildcard" if declared.params else "exact", declared)
        parts = pattern.split(".")
        if parts[-1] == "" and "" not in parts[:-1]:
            return TapPattern(pattern, check_uri(pattern[:-1]) + ".", "prefix")
        if "" in parts:
            if not all(p == "" or COMPONENT.fullmatch(p) for p in parts) or not any(parts):
                raise ValueError(f"'{pattern}' is not a WAMP wildcard such as 'chat..typing'")
            return TapPattern(pattern, pattern, "wildcard")
        return TapPattern(pattern, check_uri(pattern), "exact")
    except (PatternError, ValueError) as exc:
        raise invalid(f"pattern: {exc}") from None


@dataclass
class Tap:
    id: int
    session: int  # the staff session it forwards to
    pattern: TapPattern
    subscription: Any = None
    dropped: int = 0  # since the last record forwarded
    forwarded: int = 0
    started: float = field(default_factory=time.time)


def record_of(
    tap: Tap, topic: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """What the staff page gets for one event (the contract in README, The inspector)."""
    record: dict[str, Any] = {"tap": tap.id, "topic": topic}
    for key in _META:
        value = kwargs.get(key)
        ok = (
            isinstance(value, int) and not isinstance(value, bool)
            if key == "seq"
            else (isinstance(value, str) and len(value) <= 200)
        )
        record[key] = value if ok else None
    ts = kwargs.get("ts")
    ts = ts if isinstance(ts, int) and not isinstance(ts, bool) else None
    record["ts"] = ts
    record["age_ms"] = time.time_ns() // 1_000_000 - ts if ts is not None else None
    record.update(_payload(args[0] if len(args) == 1 else list(args) if args else None))
    record["dropped"] = tap.dropped
    return record


def _payload(payload: Any) -> dict[str, Any]:
    try:
        text = jsoncodec.dumps(payload)
    except (TypeError, ValueError):  # bytes over msgpack, say: shown, not forwarded as is
        return {"payload": repr(payload)[:MAX_PAYLOAD_BYTES], "truncated": True}
    if len(text) <= MAX_PAYLOAD_BYTES:
        return {"payload": payload}
    return {"payload": text[:MAX_PAYLOAD_BYTES].decode(errors="ignore"), "truncated": True}


class Taps:
    """The leader's taps: started, forwarded within their buckets, ended."""

    def __init__(
        self, rate: float, burst: int, per_session: int, total: int, metrics: TopicsMetrics
    ) -> None:
        self.rate, self.burst, self.per_session, self.total = rate, burst, per_session, total
        self.metrics = metrics
        self.buckets = RateLimiter(rate, burst)  # keyed by tap id
        self.taps: dict[int, Tap] = {}
        self._ids = itertools.count(1)
        self._wamp: ApplicationSession | None = None

    def reset(self, wamp: ApplicationSession | None) -> None:
        """A new router session: the old one's subscriptions, and so its taps, are gone."""
        self._wamp = wamp
        self.taps.clear()

    async def start(self, wamp: ApplicationSession, session: int, pattern: Any) -> dict[str, Any]:
        tapped = parse_pattern(pattern)
        if wamp is not self._wamp:
            self.reset(wamp)
        held = sum(1 for tap in self.taps.values() if tap.session == session)
        if held >= self.per_session or len(self.taps) >= self.total:
            raise ApplicationError(
                ERROR_TOO_MANY,
                f"at most {self.per_session} taps per session and {self.total} in all "
                f"(this session holds {held}, all hold {len(self.taps)}): stop one first "
                "(inspect.tap.stop)",
            )
        tap = Tap(next(self._ids), session, tapped)
        self.taps[tap.id] = tap  # counted at once: concurrent starts cannot pass the limit
        options = SubscribeOptions(match=tapped.match, details_arg="tap_details")
        try:
            tap.subscription = await wamp.subscribe(self._receiver(tap), tapped.uri, options)
        except ApplicationError as exc:
            self.taps.pop(tap.id, None)
            raise invalid(f"pattern '{tapped.source}' cannot be tapped: {exc.error}") from None
        if tap.id not in self.taps:  # its session left while the router subscribed
            await self._end(tap)
        log.info("tap %d on '%s' (%s) for session %d", tap.id, tapped.uri, tapped.match, session)
        return {
            "tap": tap.id,
            "pattern": tapped.source,
            "uri": tapped.uri,
            "match": tapped.match,
            "rate": self.rate,
            "burst": self.burst,
            "topic": TAP_TOPIC,
            "caveat": CAVEAT,
        }

    def _receiver(self, tap: Tap) -> Any:
        def on_event(*args: Any, tap_details: Any = None, **kwargs: Any) -> None:
            try:
                self._forward(tap, args, kwargs, tap_details)
            except Exception:  # a tap must never take the leader down
                log.exception("tap %d could not forward an event", tap.id)

        return on_event

    def _forward(self, tap: Tap, args: Any, kwargs: dict[str, Any], details: Any) -> None:
        wamp = self._wamp
        topic = getattr(details, "topic", None) or tap.pattern.uri
        if tap.id not in self.taps or wamp is None or not tap.pattern.admits(topic):
            return
        if not self.buckets.allow(tap.id):
            tap.dropped += 1
            self.metrics.tap_dropped.inc()
            return
        record = record_of(tap, topic, args, kwargs)
        tap.dropped = 0
        tap.forwarded += 1
        wamp.publish(TAP_TOPIC, record, options=PublishOptions(eligible=[tap.session]))

    async def stop(self, session: int, tap_id: int | None = None) -> int:
        """End ``session``'s tap ``tap_id`` (None: all of them); how many ended."""
        doomed = [t for t in self.taps.values() if t.session == session and tap_id in (None, t.id)]
        for tap in doomed:
            await self._end(tap)
        return len(doomed)

    async def session_left(self, session: int) -> None:
        await self.stop(session)

    async def _end(self, tap: Tap) -> None:
        self.taps.pop(tap.id, None)
        self.buckets.forget(tap.id)
        if tap.subscription is not None and tap.subscription.active:
            with contextlib.suppress(Exception):  # the router connection may be gone
                await tap.subscription.unsubscribe()
        log.info("tap %d ended (%d forwarded)", tap.id, tap.forwarded)
