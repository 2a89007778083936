"""``inspect.why_not`` and ``inspect.decisions``: why did user X not receive event Y,
answered from records (the bridge's record of what it published, bridge/published.py,
and this replica's journal, topics/journal.py), never guessed.

:func:`answer` is pure (records in, verdict and steps out); the procedures only
validate their arguments and gather the records. Each step is ``{"check", "ok",
"detail", "at"}``: ``ok`` true means the step is no obstacle to delivery, false that it
is, None that the records cannot tell.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autobahn.wamp.exception import ApplicationError

from topics.authorizer import ERROR_INVALID
from topics.journal import (
    DecisionRecord,
    Journal,
    SessionSpan,
    SubscriptionSpan,
    subscription_matches,
)
from topics.journal_feed import JournalFeed
from topics.patterns import MAX_URI_LENGTH

if TYPE_CHECKING:
    from sandbar.wamp import ApplicationSession
    from topics.service import TopicsService

PUBLISHED_PROCEDURE = "sandbar.bridge.published"  # bridge/published.py
MAX_AUTHID = 255
MAX_EVENT_ID = 128
MAX_LIMIT = 1000
BRIDGE_TIMEOUT = 3.0


@dataclass(frozen=True)
class Evidence:
    """Everything :func:`answer` reads: what was asked and the records found for it."""

    authid: str | None
    session: int | None
    event_id: str | None
    topic: str | None
    record: dict[str, Any] | None  # the bridge's record of the event, if it has one
    bridge: dict[str, Any]  # {"held", "capacity", "since"} or {"error"}
    sessions: Sequence[SessionSpan]
    subscriptions: Sequence[SubscriptionSpan]
    refusals: Sequence[DecisionRecord]  # refused subscribes of the subject's sessions
    records_since: float


def when(at: float | None) -> str:
    """``at`` as the answers write it: UTC, to the millisecond."""
    if at is None:
        return "an unknown time"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at))
    return f"{stamp}.{int(at * 1000) % 1000:03d}Z"


def _step(check: str, ok: bool | None, detail: str, at: float | None = None) -> dict[str, Any]:
    return {"check": check, "ok": ok, "detail": detail, "at": at}


def answer(evidence: Evidence) -> dict[str, Any]:
    """The verdict and its steps (see the module); pure, so unit tests take milliseconds."""
    record = evidence.record
    sessions = [s.as_dict() for s in evidence.sessions]
    for entry in sessions:
        entry["subscriptions"] = [
            s.as_dict() for s in evidence.subscriptions if s.session == entry["session"]
        ]
    result: dict[str, Any] = {"event": record, "sessions": sessions, "steps": []}
    if record is None:
        result.update(_unpublished(evidence))
        return result
    verdict, steps = _delivery(evidence, record)
    result["verdict"], result["steps"] = verdict, [_published(record), *steps]
    return result


def _unpublished(evidence: Evidence) -> dict[str, Any]:
    bridge = evidence.bridge
    if "error" in bridge:
        detail = f"the bridge did not answer, so whether it published is unknown: {bridge['error']}"
        return {"verdict": "unknown", "steps": [_step("published", None, detail)]}
    held = (
        f"it holds the last {bridge.get('capacity')} events it published "
        f"({bridge.get('held')} now, since {when(bridge.get('since'))})"
    )
    if evidence.event_id is not None:
        what = f"the bridge has no record of event '{evidence.event_id}'"
        hint = f"check GET /inspect/api/events/{evidence.event_id} for the commit"
    else:
        what = f"the bridge has no record of an event on '{evidence.topic}'"
        hint = "check the outbox (GET /inspect/api/outbox) and the API's log"
    detail = f"{what}: {held}; {hint}"
    return {"verdict": "not_published", "steps": [_step("published", False, detail)]}


def _published(record: dict[str, Any]) -> dict[str, Any]:
    seq = f"seq {record['seq']}, " if record.get("seq") is not None else ""
    detail = (
        f"event '{record['id']}' ({record['name']}) published at {when(record['published_at'])} "
        f"on '{record['topic']}' ({seq}publication {record.get('publication')})"
    )
    return _step("published", True, detail, record["published_at"])


def _delivery(evidence: Evidence, record: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    at, topic, since = float(record["published_at"]), str(record["topic"]), evidence.records_since
    who = _who(evidence)
    connected = [s for s in evidence.sessions if s.covers(at, since)]
    untold = [s for s in evidence.sessions if s.covers(at, since) is None]
    if not connected:
        step = _not_connected(evidence, who, at, untold)
        return ("unknown" if step["ok"] is None else "not_connected"), [step]
    steps = [_connected(connected, who, at)]
    matching = [
        s
        for s in evidence.subscriptions
        if s.session in {c.session for c in connected}
        and subscription_matches(s.uri, s.match, topic)
    ]
    held = [s for s in matching if s.covers(at, since)]
    refused = [
        r for r in evidence.refusals if r.at <= at and subscription_matches(r.uri, r.match, topic)
    ]
    steps.append(_subscribed(held, matching, topic, at, since))
    steps.append(_refused(refused, bool(held), topic, since))
    receiving = [c for c in connected if c.session in {s.session for s in held}] or connected
    addressing, excluded = _addressing(record, receiving, evidence.authid)
    steps.append(addressing)
    if not held:
        if any(s.covers(at, since) is None for s in matching):
            return "unknown", steps
        return ("refused" if refused else "not_subscribed"), steps
    if excluded:
        return "excluded", steps
    steps[-1]["detail"] += f"; delivered to session {sorted({s.session for s in held})}"
    if record.get("seq") is not None:
        steps[-1]["detail"] += (
            f": if the page did not show it, look for a gap before seq {record['seq']} on "
            f"'{topic}' that its catch-up should have filled"
        )
    return "delivered", steps


def _who(evidence: Evidence) -> str:
    if evidence.authid is not None:
        return f"user '{evidence.authid}'"
    return f"session {evidence.session}"


def _not_connected(
    evidence: Evidence, who: str, at: float, untold: Sequence[SessionSpan]
) -> dict[str, Any]:
    since = evidence.records_since
    if untold or at < since:
        return _step(
            "connected",
            None,
            f"no records before {when(since)} (this replica started then), and the event "
            f"was published at {when(at)}: whether {who} was connected is unknown",
        )
    spans = "; ".join(
        f"session {s.session} from {when(s.since)} to {when(s.until) if s.until else 'now'}"
        for s in evidence.sessions[:5]
    )
    seen = f" (in the records: {spans})" if spans else f" (not in the records since {when(since)})"
    if evidence.authid is not None:
        return _step("connected", False, f"no session of {who} was connected at {when(at)}{seen}")
    return _step("connected", False, f"{who} was not connected at {when(at)}{seen}")


def _connected(connected: Sequence[SessionSpan], who: str, at: float) -> dict[str, Any]:
    first = connected[0]
    started = when(first.since) if first.since is not None else "before records began"
    transport = first.transport.get("type") or "unknown transport"
    about = f"session {first.session} ({first.authrole}, {transport}) since {started}"
    if who.startswith("session "):
        return _step("connected", True, f"connected at {when(at)}: {about}", first.since)
    detail = f"{who} had {len(connected)} session(s) connected at {when(at)}: {about}"
    return _step("connected", True, detail, first.since)


def _subscribed(
    held: Sequence[SubscriptionSpan],
    matching: Sequence[SubscriptionSpan],
    topic: str,
    at: float,
    since: float,
) -> dict[str, Any]:
    if held:
        s = held[0]
        started = when(s.since) if s.since is not None else f"before records began ({when(since)})"
        detail = f"session {s.session} was subscribed to '{s.uri}' ({s.match}) since {started}"
        return _step("subscribed", True, detail, s.since)
    if not matching:
        detail = f"no subscription matching '{topic}' by these sessions in the records since {when(since)}"
        return _step("subscribed", False, detail)
    s = matching[0]
    if s.since is not None and s.since > at:
        detail = (
            f"not subscribed when it was published: session {s.session} subscribed to "
            f"'{s.uri}' ({s.match}) at {when(s.since)}, {s.since - at:.3f} s after the publish"
        )
        return _step("subscribed", False, detail, s.since)
    detail = (
        f"not subscribed when it was published: session {s.session} unsubscribed from "
        f"'{s.uri}' ({s.match}) at {when(s.until)}, before the publish"
    )
    return _step("subscribed", False, detail, s.until)


def _refused(
    refused: Sequence[DecisionRecord], subscribed: bool, topic: str, since: float
) -> dict[str, Any]:
    if not refused:
        detail = f"no refused subscription matching '{topic}' before the publish (records since {when(since)})"
        return _step("refused", True, detail)
    last = max(refused, key=lambda r: r.at)
    detail = (
        f"subscribing to '{last.uri}' was refused at {when(last.at)} (session {last.session}, "
        f"replica {last.replica}): {last.reason}"
    )
    if subscribed:
        detail += "; it was subscribed all the same when the event was published"
    return _step("refused", subscribed, detail, last.at)


def _addressing(
    record: dict[str, Any], receiving: Sequence[SessionSpan], authid: str | None
) -> tuple[dict[str, Any], bool]:
    """Whether the publish's options leave these sessions out (all of them: excluded)."""
    eligible_authid, exclude_authid = record.get("eligible_authid"), record.get("exclude_authid")
    eligible, exclude = record.get("eligible"), record.get("exclude")
    reasons: list[str] = []
    out = 0
    for s in receiving:
        name = s.authid if s.authid is not None else authid
        why = []
        if eligible_authid is not None and name not in eligible_authid:
            why.append(f"to_authids (eligible_authid) is {eligible_authid}, without '{name}'")
        if exclude_authid is not None and name in exclude_authid:
            why.append(f"exclude_authids (exclude_authid) {exclude_authid} lists '{name}'")
        if eligible is not None and s.session not in eligible:
            why.append(f"eligible sessions {eligible} leave out session {s.session}")
        if exclude is not None and s.session in exclude:
            why.append(f"session {s.session} is in exclude {exclude} (e.g. toOthers)")
        if why:
            out += 1
            reasons.append(f"session {s.session}: {'; '.join(why)}")
    excluded = bool(receiving) and out == len(receiving)
    if reasons:
        return _step(
            "addressing", not excluded, "excluded by addressing: " + " | ".join(reasons)
        ), excluded
    given = {k: v for k, v in (("eligible_authid", eligible_authid), ("exclude_authid", exclude_authid),
                               ("eligible", eligible), ("exclude", exclude)) if v is not None}  # fmt: skip
    detail = (
        f"addressing {given} includes these sessions"
        if given
        else "no addressing: every subscriber"
    )
    return _step("addressing", True, detail), False


# -- procedures -------------------------------------------------------------------------


def _invalid(reason: str) -> ApplicationError:
    return ApplicationError(ERROR_INVALID, reason)


def _text(name: str, value: Any, longest: int) -> str | None:
    if value is not None and not (isinstance(value, str) and 0 < len(value) <= longest):
        raise _invalid(f"'{name}' must be a string of 1-{longest} characters")
    return value


def _session_id(value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise _invalid("'session' must be a positive integer (a WAMP session id)")
    return value


def _limit(value: Any, default: int) -> int:
    value = default if value is None else value
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_LIMIT:
        raise _invalid(f"'limit' must be an integer from 1 to {MAX_LIMIT}")
    return value


def _no_more(procedure: str, args: Sequence[Any], unknown: dict[str, Any], known: str) -> None:
    if args or unknown:
        given = sorted(unknown) or [f"{len(args)} positional"]
        raise _invalid(f"{procedure} takes keyword arguments {known} only, not {given}")


class WhyNot:
    """The two procedures over one journal; ``wamp`` gives the session to ask the bridge with."""

    def __init__(self, journal: Journal, wamp: Callable[[], ApplicationSession | None]) -> None:
        self.journal, self.wamp = journal, wamp

    def decisions(
        self,
        *args: Any,
        details: Any = None,
        authid: Any = None,
        session: Any = None,
        topic: Any = None,
        limit: Any = 100,
        **unknown: Any,
    ) -> list[dict[str, Any]]:
        """``inspect.decisions``: the decision log, newest first, filtered."""
        _no_more("inspect.decisions", args, unknown, "authid, session, topic, limit")
        authid = _text("authid", authid, MAX_AUTHID)
        session = _session_id(session)
        topic = _text("topic", topic, MAX_URI_LENGTH)
        limit = _limit(limit, 100)

        def keep(r: DecisionRecord) -> bool:
            return (
                (authid is None or r.authid == authid)
                and (session is None or r.session == session)
                and (topic is None or r.uri == topic or subscription_matches(r.uri, r.match, topic))
            )

        return [r.as_dict() for r in self.journal.decisions.newest(keep, limit)]

    async def why_not(
        self,
        *args: Any,
        details: Any = None,
        authid: Any = None,
        session: Any = None,
        event: Any = None,
        topic: Any = None,
        **unknown: Any,
    ) -> dict[str, Any]:
        """``inspect.why_not``: give ``authid`` or ``session``, and ``event`` or ``topic``
        (its newest event the bridge published)."""
        _no_more("inspect.why_not", args, unknown, "authid or session, event or topic")
        authid = _text("authid", authid, MAX_AUTHID)
        session = _session_id(session)
        event = _text("event", event, MAX_EVENT_ID)
        topic = _text("topic", topic, MAX_URI_LENGTH)
        if (authid is None) == (session is None):
            raise _invalid("give exactly one of 'authid' (a user) or 'session' (a session id)")
        if (event is None) == (topic is None):
            raise _invalid(
                "give exactly one of 'event' (an event id) or 'topic' (its newest event)"
            )
        bridge = await self._ask_bridge(event, topic)
        found = bridge.pop("events", None) or []
        return answer(
            self.evidence(authid, session, event, topic, found[0] if found else None, bridge)
        )

    def evidence(
        self,
        authid: str | None,
        session: int | None,
        event: str | None,
        topic: str | None,
        record: dict[str, Any] | None,
        bridge: dict[str, Any],
    ) -> Evidence:
        sessions = self.journal.sessions_of(authid=authid, session=session)
        ids = {s.session for s in sessions} | ({session} if session is not None else set())
        refusals = self.journal.decisions.newest(
            lambda r: not r.allow and r.action == "subscribe" and (
                r.session in ids or (authid is not None and r.authid == authid)
            ),
            MAX_LIMIT,
        )  # fmt: skip
        return Evidence(
            authid,
            session,
            event,
            topic,
            record,
            bridge,
            sessions,
            self.journal.subscriptions_of(ids),
            refusals,
            self.journal.since,
        )

    async def _ask_bridge(self, event: str | None, topic: str | None) -> dict[str, Any]:
        wamp = self.wamp()
        if wamp is None:
            return {"error": "the topics service is not connected to the router"}
        query = {"event": event} if event is not None else {"topic": topic, "limit": 1}
        try:
            found = await asyncio.wait_for(wamp.call(PUBLISHED_PROCEDURE, **query), BRIDGE_TIMEOUT)
        except (ApplicationError, TimeoutError) as exc:
            return {"error": f"{PUBLISHED_PROCEDURE}: {exc}"}
        return dict(found) if isinstance(found, dict) else {"error": "unexpected answer"}


def install(service: TopicsService) -> JournalFeed:
    """The journal of ``service``, fed from its router session, and the two procedures in
    its inspector (the leader registers them, staff only). Returns the feed to wire."""
    config = service.config
    journal = Journal(
        config.journal_size,
        config.journal_seconds,
        config.decision_log_size,
        config.decision_log_seconds,
    )
    why = WhyNot(journal, lambda: service.wamp)
    service.inspector.add_procedure("decisions", why.decisions)
    service.inspector.add_procedure("why_not", why.why_not)
    return JournalFeed(journal, service.subscriptions, config.decision_batch_seconds)
