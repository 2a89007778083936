"""Autobahn's WebSocket sends without the cost of log lines nobody reads.

Every WAMP message the router (or a proxy) writes to a browser goes through
``WampWebSocketProtocol.send``, which first builds the arguments of a trace-level log
line (four ``hlval`` calls that colour strings with click, ~3 µs), and then through
``WebSocketProtocol.sendData``, which builds those of a debug-level one (``hltype`` and two
``hlval``, ~3.3 µs); only then does the logger find its level off. py-spy on the router
worker fanning out 25k events/s to 10,000 subscribers (``python -m bench.profile_fanout``)
put ~10 % of its samples in ``style`` and ``hl`` alone, for nothing. Here both do what
Autobahn does, without the arguments; Autobahn's own methods (with their log lines) run
whenever their log level is on.
"""

from __future__ import annotations

import functools
from typing import Any

from autobahn.wamp import websocket
from autobahn.wamp.exception import SerializationError, TransportLost
from autobahn.websocket.protocol import WebSocketProtocol

_OPEN = WebSocketProtocol.STATE_OPEN
_BEFORE_OPEN = (WebSocketProtocol.STATE_CONNECTING, WebSocketProtocol.STATE_PROXY_CONNECTING)


def _on(method: Any) -> bool:
    """txaio replaces a logger's methods below its level with one no-op function."""
    return getattr(method, "__name__", "") != "_no_op"


def _trace_on(log: Any) -> bool:
    return _on(log.trace)


def send_without_log_arguments() -> None:
    """Install the lean ``send`` and ``sendData``. Idempotent."""
    _lean_send()
    _lean_send_data()


def _lean_send() -> None:
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


def _lean_send_data() -> None:
    cls = WebSocketProtocol
    original = getattr(cls.sendData, "__wrapped__", cls.sendData)

    @functools.wraps(original)
    def sendData(self: Any, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        # chopped, synchronous or queued writes, logged octets or debug on: Autobahn's own
        if chopsize or sync or self.send_queue or self.logOctets or _on(self.log.debug):
            original(self, data, sync, chopsize)
            return
        self.transport.write(data)
        if self.state == _OPEN:
            self.trafficStats.outgoingOctetsWireLevel += len(data)
        elif self.state in _BEFORE_OPEN:
            self.trafficStats.preopenOutgoingOctetsWireLevel += len(data)

    cls.sendData = sendData  # type: ignore[method-assign]
