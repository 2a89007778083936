"""The bridge's record of what it published, for the inspector's "why did X not get Y?".

It lives in the bridge's memory, bounded (``inspect.published_records``, the newest
kept): a restart loses it, and an event older than the last N is no longer here (its
outbox row may still be: ``GET /inspect/api/events/<id>``). The publish path only
appends a tuple (benchmarked path); the records are turned into dicts when asked,
through the backend procedure ``sandbar.bridge.published`` (the topics service's
``inspect.why_not`` calls it; the authorizer denies browsers ``sandbar.*``).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from autobahn.wamp.exception import ApplicationError

from bridge.routes import Publication

PUBLISHED_PROCEDURE = "sandbar.bridge.published"
ERROR_INVALID = "sandbar.error.invalid_argument"
MAX_LIMIT = 1000
MAX_ID_LENGTH = 128
MAX_TOPIC_LENGTH = 512

#: one record: id, name, topic, seq, epoch, trace, ts, options, publication id, published_at
Record = tuple[str, str, str, int | None, str | None, str | None, int, dict[str, Any], Any, float]
ADDRESSING = ("eligible_authid", "exclude_authid", "eligible", "exclude")


class Published:
    """The newest ``size`` events the router acknowledged, by event id."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._records: OrderedDict[str, Record] = OrderedDict()

    def add(self, pub: Publication, publication: Any) -> None:
        """On the router's acknowledgement: one tuple, no copies (``pub.options`` is shared)."""
        e = pub.envelope
        pid = getattr(publication, "id", None)
        self._records[e.id] = (
            e.id, e.name, pub.topic, e.seq, e.epoch, e.trace, e.ts, pub.options, pid, time.time()
        )  # fmt: skip
        if len(self._records) > self.size:
            self._records.popitem(last=False)

    def __len__(self) -> int:
        return len(self._records)

    def query(
        self, event: Any = None, topic: Any = None, limit: Any = 50, **unknown: Any
    ) -> dict[str, Any]:
        """``sandbar.bridge.published``: the record of ``event``, or the newest ``limit``
        (on ``topic``), newest first; says how many it holds and since when."""
        _check(event, topic, limit, unknown)
        if event is not None:
            found = self._records.get(event)
            events = [as_dict(found)] if found is not None else []
        else:
            events = []
            for record in reversed(self._records.values()):
                if topic is None or record[2] == topic:
                    events.append(as_dict(record))
                    if len(events) >= limit:
                        break
        oldest = next(iter(self._records.values()), None)
        return {
            "events": events,
            "held": len(self._records),
            "capacity": self.size,
            "since": oldest[9] if oldest is not None else None,
        }


def as_dict(record: Record) -> dict[str, Any]:
    event_id, name, topic, seq, epoch, trace, ts, options, publication, at = record
    answer: dict[str, Any] = {
        "id": event_id,
        "name": name,
        "topic": topic,
        "seq": seq,
        "epoch": epoch,
        "trace": trace,
        "ts": ts,
        "published_at": at,
        "publication": publication,
    }
    for key in ADDRESSING:
        answer[key] = list(options[key]) if options.get(key) is not None else None
    return answer


def _check(event: Any, topic: Any, limit: Any, unknown: dict[str, Any]) -> None:
    """Refuse bad arguments with ``sandbar.error.invalid_argument``, saying which and why."""
    if unknown:
        raise _invalid(f"unknown arguments {sorted(unknown)}: give event=, topic= or limit=")
    for name, value, longest in (
        ("event", event, MAX_ID_LENGTH),
        ("topic", topic, MAX_TOPIC_LENGTH),
    ):
        if value is not None and not (isinstance(value, str) and 0 < len(value) <= longest):
            raise _invalid(f"'{name}' must be a string of 1-{longest} characters")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_LIMIT:
        raise _invalid(f"'limit' must be an integer from 1 to {MAX_LIMIT}")


def _invalid(reason: str) -> ApplicationError:
    return ApplicationError(ERROR_INVALID, reason)
