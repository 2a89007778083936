"""Autobahn's WebSocket ``send`` without the cost of a log line nobody reads.

Every WAMP message the router (or a proxy) writes to a browser goes through
``WampWebSocketProtocol.send``, which first builds the arguments of a trace-level log
line, four ``hlval`` calls that colour strings with click, and only then finds the
trace level off. py-spy on the router worker fanning out 25k events/s to 10,000
subscribers (``python -m bench.profile_fanout``) put ~10 % of its samples there (``style``
and ``hl``), for nothing. Here the message is serialized and sent as Autobahn does, and
Autobahn's own ``send`` (with its log line) runs whenever trace logging is on.
"""

from __future__ import annotations

import functools
from typing import Any

from autobahn.wamp import websocket
from autobahn.wamp.exception import SerializationError, TransportLost


def _trace_on(log: Any) -> bool:
    """txaio replaces a logger's methods below its level with one no-op function."""
    return getattr(log.trace, "__name__", "") != "_no_op"


def send_without_trace_arguments() -> None:
    """Install the lean ``send`` on every WAMP-over-WebSocket protocol. Idempotent."""
    cls = websocket.WampWebSocketProtocol
    original = getattr(cls.send, "__wrapped__", cls.send)

    @functools.wraps(original)
    def send(self: Any, msg: Any) -> None:
        if _trace_on(self.log):
            original(self, msg)
            return
        if self._session is None:
            raise TransportLost()
        try:
            payload, is_binary = self._serializer.serialize(msg)
        except Exception as e:  # as Autobahn reports it
            self.log.error(f"WAMP message serialization error: {e}")
            raise SerializationError(f"WAMP message serialization error: {e}") from e
        self.sendMessage(payload, is_binary)

    cls.send = send  # type: ignore[method-assign]
