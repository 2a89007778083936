"""Limits installed inside the Crossbar router worker, where every WAMP message is decoded.

Why each one:

- Autobahn decodes JSON with the pure-Python scanner (to turn ``"\\x00..."`` strings into
  bytes), which recurses twice per level of nesting, and a Crossbar dependency (py_ecc)
  raises the worker's recursion limit to 100000 on import. One 195 KB message of brackets
  from an anonymous browser therefore kept the reactor busy for ~52 s, recursing and then
  formatting a 21 MB traceback, while every other session waited. Nesting is now checked
  before the JSON decoder sees the bytes (and after the msgpack/CBOR decoders, which are C
  and bounded); a message nested too deep closes that connection as a protocol error.
- The recursion limit goes back to a sane value (which also bounds any traceback), and
  ``sys.tracebacklimit`` keeps those formatted with ``traceback`` (Autobahn's) short.
- Crossbar puts the node id, worker, process id and the peer's address into every WELCOME
  (``x_cb_*`` in its details and authextra); no configuration option leaves them out, so
  they are removed where the WELCOME is marshalled. The router keeps them for itself.

Patching Autobahn's classes is the only hook: Crossbar builds its serializers itself.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from autobahn.wamp import message, serializer

from sandbar.nesting import json_too_deep, value_too_deep

#: frames a formatted traceback may show in the router worker
TRACEBACK_LIMIT = 40
#: bytes that can start a container: msgpack fixmap/fixarray, map16/32, array16/32 ...
_MSGPACK_CONTAINERS = bytes([*range(0x80, 0xA0), *range(0xDC, 0xE0)])
#: ... and CBOR arrays and maps (major types 4 and 5, every length form)
_CBOR_CONTAINERS = bytes(range(0x80, 0xC0))


class NestingTooDeep(ValueError):
    """A message nested deeper than the router accepts."""


def _original(cls: type[Any]) -> Callable[[Any, bytes], Any]:
    """The unguarded method, so that installing twice never wraps twice."""
    method = cls.unserialize
    return getattr(method, "__wrapped__", method)


def _guard_json(limit: int) -> None:
    """Check the text before the (recursive, pure-Python) decoder sees it."""
    original = _original(serializer.JsonObjectSerializer)

    @functools.wraps(original)
    def unserialize(self: Any, payload: bytes) -> Any:
        if json_too_deep(payload, limit):
            raise NestingTooDeep(f"nested more than {limit} levels deep")
        return original(self, payload)

    serializer.JsonObjectSerializer.unserialize = unserialize  # type: ignore[method-assign]


def _guard_binary(cls: type[Any], containers: bytes, limit: int) -> None:
    """Check what the C decoder (bounded by its own stack) made of the bytes; only when the
    payload holds more bytes that could start a container than levels are allowed."""
    original = _original(cls)
    others = bytes(b for b in range(256) if b not in containers)

    @functools.wraps(original)
    def unserialize(self: Any, payload: bytes) -> Any:
        messages = original(self, payload)
        # +1: unserialize returns a list of (batched) messages
        if len(payload.translate(None, others)) > limit and value_too_deep(messages, limit + 1):
            raise NestingTooDeep(f"nested more than {limit} levels deep")
        return messages

    cls.unserialize = unserialize


def limit_nesting(limit: int) -> None:
    """Refuse WAMP messages nested more than ``limit`` deep, in every serializer we serve.
    The error becomes a protocol error that closes that connection, with a short traceback."""
    _guard_json(limit)
    for name, containers in (("MsgPack", _MSGPACK_CONTAINERS), ("CBOR", _CBOR_CONTAINERS)):
        cls = getattr(serializer, f"{name}ObjectSerializer", None)
        if cls is not None:  # present when its library is installed (autobahn[serialization])
            _guard_binary(cls, containers, limit)


def bound_recursion(limit: int) -> None:
    """Undo py_ecc's 100000 and keep every formatted traceback short."""
    sys.setrecursionlimit(limit)
    sys.tracebacklimit = TRACEBACK_LIMIT


def _without_router_details(details: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in details.items() if not key.startswith("x_cb_")}


def hide_router_details() -> None:
    """Leave Crossbar's ``x_cb_node``/``worker``/``pid``/``peer`` out of every WELCOME."""
    original = getattr(message.Welcome.marshal, "__wrapped__", message.Welcome.marshal)

    @functools.wraps(original)
    def marshal(self: message.Welcome) -> list[Any]:
        raw: list[Any] = original(self)
        details = _without_router_details(raw[2])
        if isinstance(details.get("authextra"), dict):  # the session's own dict: copy it
            details["authextra"] = _without_router_details(details["authextra"])
        raw[2] = details
        return raw

    message.Welcome.marshal = marshal  # type: ignore[method-assign]
