"""The event envelope: one JSON object per ZeroMQ frame, never pickle.

    {"v": 1, "id": "<hex>", "name": "article.created", "ts": <unix ms>, "payload": {...}}

The id travels on to subscribers so one event can be traced end to end.
Events from the API's outbox also carry ``topic``, ``seq`` (per topic, in commit
order) and ``floor`` (the lowest ``seq`` on that topic not yet acknowledged), and
``ack: true`` to ask the bridge to confirm once the router has the event, and
optionally ``reply_to``: the ZeroMQ routing id of the socket that wants that answer,
when it is not the sending one (the API's request threads send, its relay thread
reads the answers). ``others`` (``{"session", "user", "proof"}``) asks the bridge to leave
that session out, if the proof says it is the user's (see sandbar/session_proof.py).
``trace`` is the W3C traceparent of the request that made the event (sandbar/tracing.py);
subscribers get it in the kwargs. One that is not a valid traceparent is dropped, never the event.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sandbar import jsoncodec, tracing
from sandbar.nesting import DEFAULT_MAX_DEPTH, json_too_deep

VERSION = 1
DEFAULT_MAX_FRAME_BYTES = 1024 * 1024


class MalformedFrame(ValueError):
    """A frame the bridge cannot use; ``reason`` is a short code used as a counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Envelope:
    name: str
    payload: dict[str, Any]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    ts: int = field(default_factory=_now_ms)
    topic: str | None = None
    seq: int | None = None
    floor: int | None = None
    epoch: str | None = None  # which outbox (database) numbered it; seq restarts with a new one
    ack: bool = False
    reply_to: str | None = None  # routing id of the socket awaiting the ack (default: sender)
    others: dict[str, Any] | None = None  # toOthers: the session to leave out, with its proof
    trace: str | None = None  # W3C traceparent of the request that made it

    def to_bytes(self) -> bytes:
        """Encode as compact UTF-8 JSON; raise TypeError if the payload is not JSON-able."""
        document: dict[str, Any] = {
            "v": VERSION,
            "id": self.id,
            "name": self.name,
            "ts": self.ts,
            "payload": self.payload,
        }
        for key in ("topic", "seq", "floor", "epoch", "trace"):
            if getattr(self, key) is not None:
                document[key] = getattr(self, key)
        if self.ack:
            document["ack"] = True
        if self.reply_to is not None:
            document["reply_to"] = self.reply_to
        if self.others is not None:
            document["others"] = self.others
        return jsoncodec.dumps(document)

    def meta(self) -> dict[str, Any]:
        """What subscribers receive beside the payload (as WAMP kwargs)."""
        meta: dict[str, Any] = {"id": self.id, "name": self.name, "ts": self.ts}
        if self.seq is not None:
            meta["seq"] = self.seq
            meta["epoch"] = self.epoch
        if self.trace is not None:
            meta["trace"] = self.trace
        return meta

    @classmethod
    def from_bytes(cls, frame: bytes, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Envelope:
        """Decode and check one frame; every problem raises MalformedFrame with its reason."""
        if len(frame) > max_bytes:
            raise MalformedFrame("too_large", f"{len(frame)} bytes, limit is {max_bytes}")
        if json_too_deep(frame, DEFAULT_MAX_DEPTH):  # before the decoder recurses into it
            raise MalformedFrame("too_deep", f"nested more than {DEFAULT_MAX_DEPTH} levels deep")
        try:
            document = jsoncodec.loads(frame)
        except (UnicodeDecodeError, jsoncodec.JSONDecodeError) as exc:
            raise MalformedFrame("not_json", str(exc)) from None
        except RecursionError:  # not JSON enough for the depth check to see the nesting
            raise MalformedFrame("too_deep", "nested too deep to decode") from None
        if not isinstance(document, dict):
            raise MalformedFrame(
                "not_object", f"expected a JSON object, got {type(document).__name__}"
            )
        if document.get("v", VERSION) != VERSION:
            raise MalformedFrame(
                "bad_version", f"envelope version {document.get('v')!r}, expected 1"
            )
        name = document.get("name")
        if not isinstance(name, str) or not name:
            raise MalformedFrame("no_name", "the envelope has no event 'name'")
        payload = document.get("payload", {})
        if not isinstance(payload, dict):
            raise MalformedFrame("bad_payload", f"'payload' of '{name}' must be a JSON object")
        event_id = document.get("id")
        ts = document.get("ts")
        topic, seq, floor = document.get("topic"), document.get("seq"), document.get("floor")
        if topic is not None and not isinstance(topic, str):
            raise MalformedFrame("bad_sequence", "'topic' must be a string")
        for key, value in (("seq", seq), ("floor", floor)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise MalformedFrame("bad_sequence", f"'{key}' must be an integer")
        if seq is not None and topic is None:
            raise MalformedFrame("bad_sequence", "a sequenced event needs its 'topic'")
        epoch = document.get("epoch")
        if epoch is not None and not isinstance(epoch, str):
            raise MalformedFrame("bad_sequence", "'epoch' must be a string")
        reply_to = reply_address(document)
        others = document.get("others")  # checked (and counted) where it is used
        trace = document.get("trace")
        return cls(
            name=name,
            payload=payload,
            id=event_id if isinstance(event_id, str) and event_id else uuid.uuid4().hex,
            ts=ts if isinstance(ts, int) else _now_ms(),
            topic=topic,
            seq=seq,
            floor=floor,
            epoch=epoch,
            ack=document.get("ack") is True,
            reply_to=reply_to,
            others=others if others is None or isinstance(others, dict) else {},
            trace=tracing.parse(trace) if isinstance(trace, str) else None,
        )


def reply_address(document: dict[str, Any]) -> str | None:
    """The envelope's ``reply_to``, checked: a short printable ASCII routing id."""
    reply_to = document.get("reply_to")
    if reply_to is None:
        return None
    if not (isinstance(reply_to, str) and 0 < len(reply_to) <= 64 and reply_to.isascii()):
        raise MalformedFrame(
            "bad_reply_to", "'reply_to' must be a routing id of 1-64 ASCII characters"
        )
    if not reply_to.isprintable():
        raise MalformedFrame("bad_reply_to", "'reply_to' must be printable")
    return reply_to


@dataclass(frozen=True)
class Ack:
    """The bridge's answer to an event sent with ``ack: true``."""

    id: str
    ok: bool
    error: str | None = None

    def to_bytes(self) -> bytes:
        document: dict[str, Any] = {"id": self.id, "ok": self.ok}
        if self.error is not None:
            document["error"] = self.error
        return jsoncodec.dumps(document)

    @classmethod
    def from_bytes(cls, frame: bytes) -> Ack:
        document = jsoncodec.loads(frame)
        return cls(str(document["id"]), bool(document["ok"]), document.get("error"))
