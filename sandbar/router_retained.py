"""Retained events with excluded sessions, bounded and answerable (inside the router worker).

Sequenced events are published with ``retain`` (the bridge reads where a topic stands from
its retained event), and a ``toOthers`` event also names the session to leave out
(``exclude``). Crossbar 26.10 (crossbar/router/broker.py, ``Broker.processPublish``)
replaces a topic's retained event with a publish to everyone, but *appends* one that names
``eligible`` or ``exclude`` sessions, to keep an event for each audience: a topic whose
events are all ``toOthers`` kept every one of them, payload and all, for as long as the
router ran (~2 KB each for a 1 KB payload). And its retained-event check on SUBSCRIBE
(``_get_retained_event``) reads ``session in publish.eligible``, which raises TypeError
when only ``exclude`` was given: a ``get_retained`` subscribe to such a topic (the bridge
after a restart, a browser) was never answered.

Both are bounded here, where Crossbar builds them: a topic keeps its newest
``MAX_RETAINED`` events (a session left out of all of them gets none, and catches up over
``GET /events`` as after any gap), and an event that only excludes sessions is eligible to
every other one.
"""

from __future__ import annotations

import functools
from typing import Any

#: retained events a topic keeps at most (Crossbar keeps one, or one per audience)
MAX_RETAINED = 16


class _Everyone:
    """``eligible`` of an event that only excludes: holds every session, and is empty
    to Crossbar's "no audience given" test (``not publish.eligible``)."""

    def __contains__(self, session_id: object) -> bool:
        return True

    def __bool__(self) -> bool:
        return False


_EVERYONE = _Everyone()


class _ExcludingOnly:
    """A retained publish that names ``exclude`` but not ``eligible``, as Crossbar's
    retained-event check reads it."""

    __slots__ = ("_publish",)

    def __init__(self, publish: Any) -> None:
        self._publish = publish

    @property
    def eligible(self) -> _Everyone:
        return _EVERYONE

    def __getattr__(self, name: str) -> Any:
        return getattr(self._publish, name)


class _Retained(list[Any]):
    """A topic's retained events, the newest ``MAX_RETAINED`` of them."""

    def append(self, event: Any) -> None:
        super().append(event)
        del self[:-MAX_RETAINED]


class _BoundedSlot:
    """Crossbar's ``retained_events`` slot, holding a ``_Retained`` list."""

    def __init__(self, slot: Any) -> None:
        self.slot = slot

    def __get__(self, obj: Any, owner: type[Any] | None = None) -> Any:
        return self if obj is None else self.slot.__get__(obj, owner)

    def __set__(self, obj: Any, events: list[Any]) -> None:
        self.slot.__set__(obj, _Retained(events[-MAX_RETAINED:]))


def bound_retained_events() -> None:
    """Install both on Crossbar's own broker classes (so every instance has them, whenever
    it was made). Idempotent."""
    from crossbar.router import broker

    extra, event = broker.SubscriptionExtra, broker.RetainedEvent
    slot = extra.__dict__["retained_events"]
    extra.retained_events = _BoundedSlot(getattr(slot, "slot", slot))  # type: ignore[misc]

    original = getattr(event.__init__, "__wrapped__", event.__init__)

    @functools.wraps(original)
    def __init__(self: Any, publish: Any, *rest: Any) -> None:
        if publish.exclude and publish.eligible is None:
            publish = _ExcludingOnly(publish)
        original(self, publish, *rest)

    event.__init__ = __init__  # type: ignore[method-assign]
