"""Limits installed inside the Crossbar router worker, where every WAMP message is decoded.

Why each one:

- Autobahn decodes JSON with the pure-Python scanner (to turn ``"\\x00..."`` strings into
  bytes), which recurses twice per level of nesting, and a Crossbar dependency (py_ecc)
  raises the worker's recursion limit to 100000 on import. One 195 KB message of brackets
  from an anonymous browser therefore kept the reactor busy for ~52 s, recursing and then
  formatting a 21 MB traceback, while every other session waited. Nesting is now checked
  before the JSON decoder sees the bytes (and after the msgpack/CBOR decoders, which are C
  and bounded); a message nested too deep closes that connection as a protocol error.
- A JSON string escape that is half a UTF-16 pair (``"\\ud800"``) decodes to a Python str
  that no serializer can encode again, so the router could neither forward the request (to
  the topics service, over msgpack) nor answer it: the subscribe or call hung for good. Such
  a message is refused where JSON is decoded; a lone request from a joined session gets an
  ERROR for that request (a publish without acknowledge is dropped, as a refused one is),
  anything else closes the connection as a protocol error. Raw surrogates cannot arrive:
  WebSocket text, Autobahn's JSON and the msgpack and CBOR decoders all refuse invalid UTF-8.
- WAMP's JSON convention reads a string that begins with NUL (``"\\u0000..."``) as base64
  bytes; one that is not base64 (``{"text": "\\u0000\\u0087x"}``, text a browser or an
  AutobahnPython JSON client sends as it is) made the decoder fail halfway, which closed the
  connection without answering the request. It is refused and answered the same way.
- The recursion limit goes back to a sane value (which also bounds any traceback), and
  ``sys.tracebacklimit`` keeps those formatted with ``traceback`` (Autobahn's) short.
- Crossbar puts the node id, worker, process id and the peer's address into every WELCOME
  (``x_cb_*`` in its details and authextra); no configuration option leaves them out, so
  they are removed where the WELCOME is marshalled. The router keeps them for itself.

Patching Autobahn's classes is the only hook: Crossbar builds its serializers itself.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

from autobahn.wamp import message, serializer, websocket

from sandbar.nesting import json_too_deep, value_too_deep
from sandbar.router_proxies import PROXY_AUTHMETHODS
from sandbar.session_proof import sign

#: frames a formatted traceback may show in the router worker
TRACEBACK_LIMIT = 40
#: bytes that can start a container: msgpack fixmap/fixarray, map16/32, array16/32 ...
_MSGPACK_CONTAINERS = bytes([*range(0x80, 0xA0), *range(0xDC, 0xE0)])
#: ... and CBOR arrays and maps (major types 4 and 5, every length form)
_CBOR_CONTAINERS = bytes(range(0x80, 0xC0))


#: the only way JSON text can hold a surrogate: an escape ``\\uD800``-``\\uDFFF`` (any case)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
#: what is left of one once decoded: the decoder joins each well-formed pair into one
_SURROGATE = re.compile("[\ud800-\udfff]")
#: either escape a refusal can answer: a surrogate half, or the NUL that marks base64 bytes
_REFUSABLE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]|\\u0000")
#: the largest WAMP id (2**53)
_MAX_ID = 9007199254740992
#: requests a refusal can answer: SUBSCRIBE, CALL, REGISTER, and PUBLISH when acknowledged
_ANSWERABLE = {
    message.Subscribe.MESSAGE_TYPE,
    message.Call.MESSAGE_TYPE,
    message.Register.MESSAGE_TYPE,
    message.Publish.MESSAGE_TYPE,
}


class NestingTooDeep(ValueError):
    """A message nested deeper than the router accepts."""


class RefusedString(ValueError):
    """A JSON message with a string the router cannot pass on; keeps what was decoded, so
    that the request it came in can be answered."""

    def __init__(self, reason: str, messages: list[Any]) -> None:
        super().__init__(reason)
        self.messages = messages

    def found_in(self, value: Any) -> bool:
        """Is the refused string in ``value`` (a part of the message)?"""
        raise NotImplementedError


class LoneSurrogate(RefusedString):
    """A message with a string holding half a UTF-16 surrogate pair."""

    def __init__(self, surrogate: str, messages: list[Any]) -> None:
        super().__init__(
            f"lone surrogate \\u{ord(surrogate):04x} in a string: WAMP strings must be valid "
            "Unicode (send surrogates only in pairs)",
            messages,
        )

    def found_in(self, value: Any) -> bool:
        return lone_surrogate(value) is not None


class NotBase64(RefusedString):
    """A message with a string that begins with NUL (WAMP JSON's mark of base64 bytes) but
    is not base64; ``messages`` holds it as the string it is."""

    def __init__(self, error: ValueError, messages: list[Any]) -> None:
        super().__init__(
            f"a string beginning with NUL is not valid base64 ({error}): WAMP JSON reads such "
            "a string as bytes (start text with another character, send bytes as NUL + base64)",
            messages,
        )

    def found_in(self, value: Any) -> bool:
        return not_base64(value) is not None


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
        try:
            messages = original(self, payload)
        except json.JSONDecodeError:
            raise
        except ValueError as failed:  # a NUL-marked string base64 could not decode
            if self._batched or b"\\u0000" not in payload:
                raise
            messages = [json.loads(payload)]  # as plain JSON: nesting is checked above
            if not_base64(messages) is None:
                raise
            raise NotBase64(failed, messages) from None
        if may_hold_surrogates(payload):
            surrogate = lone_surrogate(messages)
            if surrogate is not None:
                raise LoneSurrogate(surrogate, messages)
        return messages

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
    """Refuse WAMP messages nested more than ``limit`` deep, in every serializer we serve,
    and JSON ones holding a lone surrogate. The error becomes a protocol error that closes
    that connection, with a short traceback (``refuse_lone_surrogates`` answers most)."""
    _guard_json(limit)
    for name, containers in (("MsgPack", _MSGPACK_CONTAINERS), ("CBOR", _CBOR_CONTAINERS)):
        cls = getattr(serializer, f"{name}ObjectSerializer", None)
        if cls is not None:  # present when its library is installed (autobahn[serialization])
            _guard_binary(cls, containers, limit)


def may_hold_surrogates(payload: bytes) -> bool:
    """Could this JSON text hold a surrogate? One regex search (with its literal ``\\u``
    prefix, faster than ``b"\\u" in payload``): 0.1-0.2 µs for an ordinary message."""
    return _SURROGATE_ESCAPE.search(payload) is not None


def _strings(value: Any, keys: bool) -> Iterator[str]:
    """Every string of a decoded JSON value (with the keys of its objects, when ``keys``).
    Level by level, like ``value_too_deep``, so it never recurses."""
    level = [value]
    while level:
        inner: list[Any] = []
        for item in level:
            if isinstance(item, str):
                yield item
            elif isinstance(item, dict):
                inner.extend((*item.keys(), *item.values()) if keys else item.values())
            elif isinstance(item, (list, tuple)):
                inner.extend(item)
        level = inner


def lone_surrogate(value: Any) -> str | None:
    """The first surrogate in any string (key or value) of a decoded JSON value, or None."""
    for text in _strings(value, keys=True):
        found = _SURROGATE.search(text)
        if found:
            return found.group()
    return None


def not_base64(value: Any) -> str | None:
    """The first string value that Autobahn's JSON decoder reads as base64 (it begins with
    NUL; keys are never read so) but cannot decode, or None."""
    for text in _strings(value, keys=False):
        if text[:1] == "\x00":
            try:
                base64.b64decode(text[1:])  # as Autobahn decodes it
            except ValueError:
                return text
    return None


def _acknowledged(raw: list[Any]) -> bool:
    return len(raw) > 2 and isinstance(raw[2], dict) and raw[2].get("acknowledge") is True


def _refusal(raw: list[Any], refused: RefusedString) -> message.Error | None:
    """The ERROR answering this one request, or None when it cannot be answered."""
    answerable = len(raw) >= 4 and raw[0] in _ANSWERABLE and isinstance(raw[2], dict)
    if not answerable or type(raw[1]) is not int or not 0 <= raw[1] <= _MAX_ID:
        return None  # as Autobahn parses it, a protocol error
    error = "wamp.error.invalid_uri" if refused.found_in(raw[3]) else "wamp.error.invalid_argument"
    return message.Error(raw[0], raw[1], error, args=[str(refused)])


def _refused(protocol: Any, payload: bytes) -> RefusedString | None:
    """Why the JSON decoder refuses this joined session's one message for a string."""
    decoder = protocol._serializer._serializer
    session = protocol._session
    if not isinstance(decoder, serializer.JsonObjectSerializer) or session is None:
        return None
    if session._session_id is None:
        return None  # before WELCOME there is no request to answer: a protocol error
    try:
        decoder.unserialize(payload)
    except RefusedString as refused:
        return refused if len(refused.messages) == 1 else None
    except Exception:  # any other problem is Autobahn's to report, as it always was
        return None
    return None


def _answered(protocol: Any, payload: bytes) -> bool:
    """Answer a lone request refused for a string; False leaves the payload to Autobahn,
    which decodes it again: a refusal then closes the connection, and a payload that only
    held escaped pairs (rare: browsers and Autobahn send them as UTF-8) costs ~12 µs more."""
    refused = _refused(protocol, payload)
    if refused is None:
        return False
    raw = refused.messages[0]
    if raw[:1] == [message.Publish.MESSAGE_TYPE] and not _acknowledged(raw):
        protocol.log.warn("dropped a publish: {why}", why=refused)
        return True  # no answer asked for: dropped, as a refused publish is
    answer = _refusal(raw, refused)
    if answer is None:
        return False
    protocol.log.warn("refused a request: {why}", why=refused)
    protocol.send(answer)
    return True


def refuse_lone_surrogates() -> None:
    """Answer (or refuse) WAMP-over-WebSocket JSON requests whose strings hold a lone
    surrogate or begin with NUL without being base64; the JSON decoder itself refuses them
    (see ``limit_nesting``) everywhere else."""
    cls = websocket.WampWebSocketProtocol
    original = getattr(cls.onMessage, "__wrapped__", cls.onMessage)

    @functools.wraps(original)
    def onMessage(self: Any, payload: bytes, isBinary: bool) -> None:
        if isBinary or not _REFUSABLE_ESCAPE.search(payload) or not _answered(self, payload):
            original(self, payload, isBinary)

    cls.onMessage = onMessage  # type: ignore[method-assign]


def bound_recursion(limit: int) -> None:
    """Undo py_ecc's 100000 and keep every formatted traceback short."""
    sys.setrecursionlimit(limit)
    sys.tracebacklimit = TRACEBACK_LIMIT


def _without_router_details(details: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in details.items() if not key.startswith("x_cb_")}


def _proxied_authextra(welcome: message.Welcome, extra: dict[str, Any], secret: str | None) -> None:
    """A proxied session's authextra, as the client would have had it without the proxy.

    The proxy forwards the client's transport details in it (its HTTP headers, the
    proxy's pid), which Crossbar keeps in the WELCOME. And the proxy ran the ticket
    authenticator before the router chose the session's id, so the session proof
    (sandbar/session_proof.py) names the proxy's provisional id: it is signed again
    here, where the id is final, with the same backend secret."""
    extra.pop("transport", None)
    if secret and isinstance(extra.get("session_proof"), str) and welcome.authid:
        extra["session_proof"] = sign(secret, welcome.session, welcome.authid)


def hide_router_details(proof_secret: str | None = None) -> None:
    """Leave Crossbar's ``x_cb_node``/``worker``/``pid``/``peer`` out of every WELCOME
    (and a proxied session's transport; its proof is signed with ``proof_secret``)."""
    original = getattr(message.Welcome.marshal, "__wrapped__", message.Welcome.marshal)

    @functools.wraps(original)
    def marshal(self: message.Welcome) -> list[Any]:
        raw: list[Any] = original(self)
        details = _without_router_details(raw[2])
        if isinstance(details.get("authextra"), dict):  # the session's own dict: copy it
            details["authextra"] = _without_router_details(details["authextra"])
            if self.authmethod in PROXY_AUTHMETHODS:
                _proxied_authextra(self, details["authextra"], proof_secret)
        raw[2] = details
        return raw

    message.Welcome.marshal = marshal  # type: ignore[method-assign]
