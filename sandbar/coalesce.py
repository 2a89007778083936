"""Write what a backend session sends in one event-loop turn with one ``send()``.

asyncio's transport sends each ``write`` at once when its buffer is empty: a system call
per WAMP message, and on the router's side a read per message. The bridge publishes a
window of events in one turn; batched, they leave as one write and are read as one, which
frees CPU on both sides. Each message waits at most until the end of the current turn.
"""

from __future__ import annotations

import asyncio
from typing import Any


class CoalescingTransport:
    """Wraps a transport; ``write`` buffers until the loop's next turn, ``close`` flushes
    first (a GOODBYE written just before it must still leave), ``abort`` drops."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._chunks:
            self._loop.call_soon(self._flush)
        self._chunks.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def _flush(self) -> None:
        chunks, self._chunks = self._chunks, []
        if chunks and not self._transport.is_closing():
            self._transport.write(b"".join(chunks))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._chunks = []
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:  # get_extra_info, pause_reading, ...
        return getattr(self._transport, name)


def coalesce_writes(protocol: asyncio.BaseProtocol, loop: asyncio.AbstractEventLoop) -> None:
    """Make ``protocol`` write through a CoalescingTransport from its connection on."""
    made = protocol.connection_made

    def connection_made(transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        made(CoalescingTransport(transport, loop))  # type: ignore[arg-type]

    protocol.connection_made = connection_made  # type: ignore[method-assign]
