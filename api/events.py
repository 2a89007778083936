"""Catch-up: ``GET /events?topic=…&after=<seq>`` returns what a client missed, from the
outbox (the source of truth), guarded by the topic's own ``on_subscribe``."""

from __future__ import annotations

import asyncio
import json
from functools import cache
from typing import Any

from flask import Blueprint, current_app, request
from sqlalchemy import func, select

from api.auth import current_user
from api.db import outbox, outbox_epoch
from api.errors import MAX_INTEGER, ApiError, invalid, query_int
from api.others import reader_sessions
from topics.authorizer import Authorizer
from topics.service import load_router
from topics.session import SessionInfo

bp = Blueprint("events", __name__)

ANONYMOUS = SessionInfo(id=0, authrole="anonymous", authmethod="anonymous")


@cache
def _authorizer(topics_app: str) -> Authorizer:
    return Authorizer(load_router(topics_app))


def _reader() -> SessionInfo:
    """Who asks: the Bearer token's user, else an anonymous session."""
    if not request.headers.get("Authorization"):
        return ANONYMOUS
    user = current_user()
    return SessionInfo(
        id=0,
        authid=user.username,
        authrole=user.role,
        authmethod="ticket",
        authextra={"user": user.username},
    )


def _check_may_read(reader: SessionInfo, topic: str) -> None:
    authorizer = _authorizer(current_app.config["SANDBAR"].topics_app)
    decision = asyncio.run(authorizer.authorize(reader, topic, "subscribe"))
    if not decision.allow:
        raise ApiError(403, "forbidden", f"topic '{topic}': {decision.reason}")


def _addressed_to(reader: SessionInfo, audience: str | None, own: set[int]) -> bool:
    """Events for particular users (``to_authids`` routes) only reach those users, and an
    event its own request sent to others (toOthers) skips the reader's sessions it named,
    if the reader is that request's user (a header can only hide events from oneself)."""
    if audience is None:
        return True
    options = json.loads(audience)
    others = options.get("others") or {}
    if others.get("session") in own and others.get("user") == reader.authid:
        return False
    if reader.authid in (options.get("exclude_authid") or []):
        return False
    eligible = options.get("eligible_authid")
    return eligible is None or reader.authid in eligible


def _epoch() -> str:
    """The outbox's epoch (the seq numbering's), read once per app."""
    extensions = current_app.extensions
    if "sandbar_epoch" not in extensions:
        extensions["sandbar_epoch"] = outbox_epoch(extensions["sandbar_db"])
    return str(extensions["sandbar_epoch"])


def _event(row: Any) -> dict[str, Any]:
    """One row as a subscriber sees it: the live event's kwargs and its payload."""
    event = {
        "id": row.event_id,
        "name": row.name,
        "ts": row.ts,
        "seq": row.seq,
        "payload": json.loads(row.payload),
    }
    if row.trace is not None:
        event["trace"] = row.trace
    return event


@bp.get("/events")
def catch_up() -> dict[str, Any]:
    settings = current_app.config["SANDBAR"]
    topic = request.args.get("topic", "")
    if not topic:
        raise invalid("topic", "is required, e.g. /events?topic=articles&after=0")
    after = query_int(
        "after",
        0,
        MAX_INTEGER,
        f"must be a sequence number from 0 (the oldest kept) to {MAX_INTEGER}",
    )
    top = settings.max_catch_up
    limit = query_int("limit", 100, top, f"must be an integer from 1 to {top}", low=1)
    reader = _reader()
    _check_may_read(reader, topic)
    own = reader_sessions()
    with current_app.extensions["sandbar_db"].connect() as conn:
        rows = conn.execute(
            select(outbox)
            .where(
                outbox.c.topic == topic,
                outbox.c.seq > after,
                outbox.c.failed.is_(None),
            )
            .order_by(outbox.c.seq)
            .limit(limit + 1)
        ).all()
        oldest = conn.execute(
            select(func.min(outbox.c.seq)).where(outbox.c.topic == topic)
        ).scalar_one_or_none()
    events = [_event(r) for r in rows[:limit] if _addressed_to(reader, r.audience, own)]
    current_app.extensions["sandbar_metrics"].catch_up_events.inc(len(events))
    return {
        "topic": topic,
        "epoch": _epoch(),  # a client that saw another epoch must reload instead
        "events": events,
        "more": len(rows) > limit,
        # events before `oldest` were pruned: a client that needs them must reload instead
        "truncated": oldest is not None and after + 1 < oldest,
    }
