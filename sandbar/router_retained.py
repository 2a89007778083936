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

And the check knows only session ids: an event addressed by authid or role
(``to_authids``: ``eligible_authid``) went to any session subscribing with ``get_retained``.

All three are fixed here, where Crossbar builds them: a topic keeps its newest
``MAX_RETAINED`` events (a session left out of all of them gets none, and catches up over
``GET /events`` as after any gap), and an addressed event goes to the sessions that would
have got it live (:func:`may_see`), and to the backend, which reads where a topic stands.
"""

from __future__ import annotations

import functools
from typing import Any

#: retained events a topic keeps at most (Crossbar keeps one, or one per audience)
MAX_RETAINED = 16


#: the role trusted with every retained event: the bridge reads where a topic stands from
#: the newest one, whoever it was addressed to
BACKEND_ROLE = "backend"

#: the router's sessions by id, as its broker attaches them (for the audience check)
_SESSIONS: dict[int, Any] = {}


def may_see(publish: Any, session_id: int, authid: str | None, authrole: str | None) -> bool:
    """Whether a session may get a retained event: as it would have got the publish live
    (session ids, authids and roles, eligible and excluded), or it is the backend."""
    if authrole == BACKEND_ROLE:
        return True
    subject = (session_id, authid, authrole)
    eligible = (publish.eligible, publish.eligible_authid, publish.eligible_authrole)
    excluded = (publish.exclude, publish.exclude_authid, publish.exclude_authrole)
    if any(
        allowed is not None and who not in allowed
        for allowed, who in zip(eligible, subject, strict=True)
    ):
        return False
    return not any(denied and who in denied for denied, who in zip(excluded, subject, strict=True))


class _Audience:
    """``eligible`` of an addressed retained event, as Crossbar's check reads it: truthy
    (an audience is given), holding the sessions :func:`may_see` lets through."""

    __slots__ = ("_publish",)

    def __init__(self, publish: Any) -> None:
        self._publish = publish

    def __bool__(self) -> bool:
        return True

    def __contains__(self, session_id: object) -> bool:
        if not isinstance(session_id, int) or session_id not in _SESSIONS:
            return False
        session = _SESSIONS[session_id]
        return may_see(self._publish, session_id, session._authid, session._authrole)


def _addressed(publish: Any) -> bool:
    return any(getattr(publish, name, None) is not None for name in ADDRESSING)


ADDRESSING = (
    "eligible",
    "exclude",
    "eligible_authid",
    "exclude_authid",
    "eligible_authrole",
    "exclude_authrole",
)


class _AddressedPublish:
    """A retained publish with addressing, as Crossbar's retained-event check reads it:
    the whole audience rule in ``eligible``, nothing left in ``exclude``."""

    __slots__ = ("_publish",)

    def __init__(self, publish: Any) -> None:
        self._publish = publish

    @property
    def eligible(self) -> _Audience:
        return _Audience(self._publish)

    @property
    def exclude(self) -> tuple[()]:
        return ()

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
        if _addressed(publish):
            publish = _AddressedPublish(publish)
        original(self, publish, *rest)

    event.__init__ = __init__  # type: ignore[method-assign]
    _track_sessions(broker.Broker)


def _track_sessions(broker_class: Any) -> None:
    """Keep :data:`_SESSIONS` as the broker attaches and detaches sessions. Idempotent."""
    attach = getattr(broker_class.attach, "__wrapped__", broker_class.attach)
    detach = getattr(broker_class.detach, "__wrapped__", broker_class.detach)

    @functools.wraps(attach)
    def attached(self: Any, session: Any) -> Any:
        _SESSIONS[session._session_id] = session
        return attach(self, session)

    @functools.wraps(detach)
    def detached(self: Any, session: Any) -> Any:
        _SESSIONS.pop(session._session_id, None)
        return detach(self, session)

    broker_class.attach, broker_class.detach = attached, detached
