"""The inspector's HTTP side (README, The inspector): staff Bearer tokens only.

* ``POST /inspect/api/publish`` ``{"event", "payload"}`` → 202 ``{"id", "event", "topic",
  "seq"}``: a test event sent the real way (a transaction, the outbox, the bridge).
* ``GET /inspect/api/events/<id>`` → the event's outbox row, or 404.
* ``GET /inspect/api/outbox`` → ``{"backlog", "oldest_age_s", "delivery"}``.

Every endpoint answers 401 without a valid token and 403 with a token whose user is not
staff, before it reads anything (checked here, on the server, whatever the page does).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, current_app, request
from sqlalchemy import select

from api.auth import current_user
from api.db import outbox
from api.errors import ApiError, invalid, json_object, required_string
from api.events import _epoch as epoch
from api.outbox import backlog
from api.push import Push, transaction
from bridge.config import load_routes
from bridge.envelope import Envelope, MalformedFrame
from bridge.routes import BACKEND_NAMESPACES, RouteTable
from bridge.schemas import load_event_schemas
from sandbar.schemas import EventSchemas, PayloadMismatch
from topics.handlers import Reject
from topics.inspector import NOT_STAFF, STAFF
from topics.payloads import check_relayable

bp = Blueprint("inspector", __name__)
#: event ids the outbox makes are 32 hex digits; other senders' are at most this long
MAX_EVENT_ID = 64


@bp.before_request
def _staff_only() -> None:
    """401 without a valid token (current_user), 403 for anyone but staff. A CORS
    preflight (OPTIONS, which browsers send without the token) is answered, not checked:
    it reads nothing, and the request it precedes is checked."""
    if request.method == "OPTIONS":
        return
    if current_user().role != STAFF:
        raise ApiError(403, "forbidden", NOT_STAFF)


def _routes() -> RouteTable:
    extensions = current_app.extensions
    if "sandbar_routes" not in extensions:
        extensions["sandbar_routes"] = load_routes(current_app.config["SANDBAR"].routes_config)
    routes: RouteTable = extensions["sandbar_routes"]
    return routes


def _schemas() -> EventSchemas:
    """The schemas the bridge checks every frame against (its YAML's and the topics')."""
    extensions = current_app.extensions
    if "sandbar_bridge_schemas" not in extensions:
        config = current_app.config["SANDBAR"]
        extensions["sandbar_bridge_schemas"] = load_event_schemas(
            config.routes_config, config.topics_app
        )
    schemas: EventSchemas = extensions["sandbar_bridge_schemas"]
    return schemas


def _publishable(routes: RouteTable) -> list[str]:
    """Events a test may send: those routed to a topic browsers can subscribe to."""
    return [name for name, route in routes if route.topic.parts[0] not in BACKEND_NAMESPACES]


@bp.post("/inspect/api/publish")
def publish() -> tuple[dict[str, Any], int]:
    """Send a test event through the real path: checked like the app's own (its route,
    its schema, JSON clients can read it), committed in a transaction (the outbox, or
    sent after commit in fire-and-forget mode), relayed by the bridge. Only events with a
    route in the bridge config, and not those routed to backend topics (``sandbar.*``:
    e.g. ``auth.revoked`` would sign a user out)."""
    data = json_object('{"event": "article.created", "payload": {...}}')
    unknown = sorted(set(data) - {"event", "payload"})
    if unknown:
        raise invalid(str(unknown[0])[:64], "unknown field; send only 'event' and 'payload'")
    name = required_string(data, "event")
    known = _publishable(_routes())
    if name not in known:
        shown = name if len(name) <= 64 else name[:64] + "..."
        raise invalid("event", f"'{shown}' is not an event one may publish; known: {known}")
    payload = data.get("payload")
    if not isinstance(payload, dict):
        raise invalid("payload", f"must be a JSON object: the payload of '{name}'")
    topic = _checked(name, payload)
    push: Push = current_app.extensions["sandbar_push"]
    with transaction():
        envelope = push.emit(name, payload)
    event = {"id": envelope.id, "event": name, "topic": envelope.topic or topic}
    return {**event, "seq": envelope.seq}, 202


def _checked(name: str, payload: dict[str, Any]) -> str:
    """The topic ``payload`` goes to, once it passed what the bridge will check."""
    try:
        _schemas().check(name, payload)
        check_relayable(payload)
        return _routes().resolve(Envelope(name=name, payload=payload)).topic
    except PayloadMismatch as exc:
        field = f"payload.{exc.path}" if exc.path else "payload"
        raise ApiError(400, "schema_mismatch", str(exc), field=field) from None
    except Reject as exc:
        raise invalid("payload", exc.reason) from None
    except MalformedFrame as exc:
        raise invalid("payload", exc.detail) from None


@bp.get("/inspect/api/events/<event_id>")
def event(event_id: str) -> dict[str, Any]:
    """The outbox row of event ``event_id``: ``{"id", "event", "topic", "seq", "epoch",
    "committed_at" (unix s), "acknowledged", "delivered_at", "failed", "attempts",
    "trace", "payload"}``; 404 when there is none."""
    if not 0 < len(event_id) <= MAX_EVENT_ID or not event_id.isprintable():
        raise invalid("id", f"must be an event id of 1 to {MAX_EVENT_ID} characters")
    settings = current_app.config["SANDBAR"]
    engine = current_app.extensions["sandbar_db"]
    with engine.connect() as conn:
        row = conn.execute(select(outbox).where(outbox.c.event_id == event_id)).one_or_none()
    if row is None:
        raise ApiError(404, "not_found", _missing(event_id, settings))
    return {
        "id": row.event_id,
        "event": row.name,
        "topic": row.topic,
        "seq": row.seq,
        "epoch": epoch(),
        "committed_at": row.ts / 1000,
        "acknowledged": row.delivered_at is not None,
        "delivered_at": row.delivered_at / 1000 if row.delivered_at is not None else None,
        "failed": row.failed,
        "attempts": row.attempts,
        "trace": row.trace,
        "payload": json.loads(row.payload),
    }


def _missing(event_id: str, settings: Any) -> str:
    if settings.delivery != "reliable":
        return (
            f"no event {event_id}: this API sends fire-and-forget (delivery), which keeps "
            "no outbox rows"
        )
    return (
        f"no event {event_id} in the outbox: either it was never committed here, or it "
        f"was delivered and then pruned (delivered rows are kept "
        f"{settings.outbox_retention_seconds:g} s, at most {settings.outbox_retention_rows})"
    )


@bp.get("/inspect/api/outbox")
def outbox_backlog() -> dict[str, Any]:
    """Events committed and not yet acknowledged by the bridge, and the oldest's age."""
    with current_app.extensions["sandbar_db"].connect() as conn:
        waiting = backlog(conn)
    return {**waiting, "delivery": current_app.config["SANDBAR"].delivery}
