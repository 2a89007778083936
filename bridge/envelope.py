"""The event envelope: one JSON object per ZeroMQ frame, never pickle.

    {"v": 1, "id": "<hex>", "name": "article.created", "ts": <unix ms>, "payload": {...}}

The id travels on to subscribers so one event can be traced end to end.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

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

    def to_bytes(self) -> bytes:
        """Encode as compact UTF-8 JSON; raise TypeError if the payload is not JSON-able."""
        document = {
            "v": VERSION,
            "id": self.id,
            "name": self.name,
            "ts": self.ts,
            "payload": self.payload,
        }
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()

    def meta(self) -> dict[str, Any]:
        """What subscribers receive beside the payload (as WAMP kwargs)."""
        return {"id": self.id, "name": self.name, "ts": self.ts}

    @classmethod
    def from_bytes(cls, frame: bytes, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Envelope:
        """Decode and check one frame; every problem raises MalformedFrame with its reason."""
        if len(frame) > max_bytes:
            raise MalformedFrame("too_large", f"{len(frame)} bytes, limit is {max_bytes}")
        try:
            document = json.loads(frame)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MalformedFrame("not_json", str(exc)) from None
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
        return cls(
            name=name,
            payload=payload,
            id=event_id if isinstance(event_id, str) and event_id else uuid.uuid4().hex,
            ts=ts if isinstance(ts, int) else _now_ms(),
        )
