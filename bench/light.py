"""A minimal WAMP-over-WebSocket subscriber: just enough protocol to join anonymously,
subscribe to one topic and hand over each event's payload and kwargs.

The benchmark opens up to thousands of subscribers on the machine under test. An
AutobahnPython session spends ~50-100 µs of Python per received frame, so 1000 of them
in two processes took longer to *read* an event than the router took to send it; this
client spends ~10 µs. It speaks to the real router like a browser does (RFC 6455 with
masked client frames, ``wamp.2.json``, anonymous, authorized by the topics service),
answers the router's pings, and reports a connection the router closes. Leaving closes the
connection once the router answers GOODBYE, as AutobahnJS does: Crossbar keeps a
connection open after GOODBYE (WAMP lets a client join again on it), so a client that only
says GOODBYE leaves an idle connection in the router for good.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Callable
from typing import Any

HELLO, WELCOME, ABORT, GOODBYE, ERROR, SUBSCRIBE, SUBSCRIBED, EVENT = 1, 2, 3, 6, 8, 32, 33, 36
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA
#: WebSocket close status: normal closure
NORMAL_CLOSURE = (1000).to_bytes(2, "big")
#: seconds a leaving client waits for the router's GOODBYE and CLOSE before it drops the socket
LEAVE_TIMEOUT = 5.0


def frame(opcode: int, data: bytes) -> bytes:
    """One final client frame, masked as RFC 6455 requires of clients."""
    n = len(data)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 1 << 16:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return head + mask + (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")


class LightSubscriber(asyncio.Protocol):
    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        topic: str,
        on_event: Callable[[Any, dict[str, Any]], None],
        on_dropped: Callable[[str], None],
    ) -> None:
        """``on_dropped`` is told why, when the other side ends the connection."""
        self.host, self.port, self.path, self.topic = host, port, path, topic
        self.on_event, self.on_dropped = on_event, on_dropped
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.stopping = False
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._upgraded = False
        self._fragments: list[bytes] = []
        self._close_sent = False
        self._closed_by: str | None = None  # the router's close frame, if it sent one

    # -- WebSocket ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: wamp.2.json\r\n"
            f"Origin: http://{self.host}:{self.port}\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        if not self._upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[:end]).split(b"\r\n", 1)[0]
            if b" 101 " not in status:
                self._fail(f"WebSocket upgrade refused: {status.decode('latin-1')}")
                return
            del buf[: end + 4]
            self._upgraded = True
            self._send_wamp([HELLO, "sandbar", {"roles": {"subscriber": {}}}])
        while len(buf) >= 2:
            fin, opcode, length, offset = buf[0] & 0x80, buf[0] & 0x0F, buf[1] & 0x7F, 2
            if length == 126:
                if len(buf) < 4:
                    return
                length, offset = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length, offset = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < offset + length:
                return
            payload = bytes(buf[offset : offset + length])
            del buf[: offset + length]
            self._on_frame(bool(fin), opcode, payload)

    def _on_frame(self, fin: bool, opcode: int, payload: bytes) -> None:
        if opcode == PING:
            self._write(PONG, payload)
        elif opcode == CLOSE:
            if not self._close_sent:  # the router's close, not its answer to ours
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                self._closed_by = f"closed by the router ({code}: {payload[2:].decode()!r})"
                self._write(CLOSE, payload[:2])
            if self._transport is not None:
                self._transport.close()
        elif opcode in (TEXT, 0x0):  # a text frame, or the continuation of one
            self._fragments.append(payload)
            if fin:
                message, self._fragments = b"".join(self._fragments), []
                self._on_wamp(json.loads(message))

    def _write(self, opcode: int, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(frame(opcode, data))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail("connection closed")
        if not self.stopping:
            why = f"lost without a close frame ({exc or 'EOF'})"
            self.on_dropped(self._closed_by or why)

    # -- WAMP --------------------------------------------------------------------------

    def _send_wamp(self, message: list[Any]) -> None:
        self._write(TEXT, json.dumps(message).encode())

    def _on_wamp(self, message: list[Any]) -> None:
        kind = message[0]
        if kind == EVENT:  # [EVENT, subscription, publication, details, args, kwargs]
            self.on_event(message[4][0], message[5] if len(message) > 5 else {})
        elif kind == WELCOME:
            self._send_wamp([SUBSCRIBE, 1, {}, self.topic])
        elif kind == SUBSCRIBED:
            if not self.ready.done():
                self.ready.set_result(None)
        elif kind == GOODBYE and not self.stopping:  # the router's own, not its answer
            self._send_wamp([GOODBYE, {}, "wamp.close.goodbye_and_out"])
        elif kind == GOODBYE:  # the answer to ours: the session is over, so is the connection
            self._write(CLOSE, NORMAL_CLOSURE)
            self._close_sent = True
        elif kind in (ABORT, ERROR):
            self._fail(f"router said {message}")

    def _fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(why))

    def leave(self) -> None:
        """Say GOODBYE; the connection closes on the router's answer (or after a timeout)."""
        self.stopping = True
        self._send_wamp([GOODBYE, {}, "wamp.close.system_shutdown"])
        if self._transport is not None:
            asyncio.get_running_loop().call_later(LEAVE_TIMEOUT, self._transport.close)
