"""A bare WebSocket client over a plain socket: sends exactly the bytes and headers a test
chooses (a forged ``Origin``, a message no WAMP library would build) and reads frames back."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from collections.abc import Callable
from typing import Any, Self

import cbor2
import msgpack

#: serializer → (encode, decode, WebSocket opcode)
CODECS: dict[str, tuple[Callable[[Any], bytes], Callable[[bytes], Any], int]] = {
    "json": (lambda value: json.dumps(value).encode(), json.loads, 0x1),
    "msgpack": (msgpack.packb, msgpack.unpackb, 0x2),
    "cbor": (cbor2.dumps, cbor2.loads, 0x2),
}


class HandshakeRefused(Exception):
    """The server answered the opening handshake with something other than 101."""

    def __init__(self, status_line: str) -> None:
        super().__init__(status_line)
        self.status_line = status_line


class RawWebSocket:
    """One WAMP-over-WebSocket connection (``wamp.2.json`` by default)."""

    def __init__(
        self,
        port: int,
        *,
        origin: str | None = None,
        serializer: str = "json",
        timeout: float = 10.0,
    ) -> None:
        self.encode, self.decode, self.opcode = CODECS[serializer]
        protocol = f"wamp.2.{serializer}"
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        headers = [
            "GET /ws HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            f"Sec-WebSocket-Protocol: {protocol}",
        ]
        if origin is not None:
            headers.append(f"Origin: {origin}")
        self.sock.sendall(("\r\n".join(headers) + "\r\n\r\n").encode())
        response = self._read_until(b"\r\n\r\n")
        status = response.split(b"\r\n", 1)[0].decode(errors="replace")
        if " 101 " not in status:
            self.sock.close()
            raise HandshakeRefused(status)
        self._buffer = response.split(b"\r\n\r\n", 1)[1]

    def _read_until(self, marker: bytes) -> bytes:
        data = b""
        while marker not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data

    def _read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by the server")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def send_text(self, payload: bytes) -> None:
        """One masked text frame (clients must mask), however large or odd the payload."""
        self.send_frame(payload, opcode=0x1)

    def send_frame(self, payload: bytes, opcode: int = 0x2) -> None:
        """One masked, final frame: binary (0x2) by default."""
        head = bytes([0x80 | opcode])
        size = len(payload)
        if size < 126:
            head += bytes([0x80 | size])
        elif size < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack("!H", size)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", size)
        mask = os.urandom(4)
        key = (mask * (size // 4 + 1))[:size]  # XOR as big integers: no per-byte loop
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
        self.sock.sendall(head + mask + masked)

    def receive(self) -> tuple[int, bytes]:
        """The next frame: (opcode, payload); a close frame is opcode 8."""
        first, second = self._read_exactly(2)
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", self._read_exactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", self._read_exactly(8))[0]
        return first & 0x0F, self._read_exactly(size)

    def send_message(self, message: list[Any]) -> None:
        self.send_frame(self.encode(message), self.opcode)

    def receive_message(self) -> list[Any]:
        opcode, payload = self.receive()
        if opcode == 8:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            raise ConnectionError(f"closed by the router ({code}): {payload[2:].decode()}")
        return list(self.decode(payload))

    def hello(self, realm: str = "sandbar") -> list[Any]:
        """Join anonymously, as a browser does; returns the router's answer (WELCOME)."""
        self.send_message([1, realm, {"roles": {"subscriber": {}, "caller": {}, "publisher": {}}}])
        return self.receive_message()

    def closed_by_peer(self) -> str:
        """Wait for the close frame (or the dropped connection); returns its reason."""
        while True:
            try:
                opcode, payload = self.receive()
            except (ConnectionError, OSError) as exc:
                return f"dropped ({exc})"
            if opcode == 8:
                return payload[2:].decode(errors="replace")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
