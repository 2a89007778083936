"""Backend sessions batch their writes per event-loop turn (sandbar/coalesce.py), on a real
socket pair: one turn's messages arrive as one read, in order; close flushes, abort drops."""

from __future__ import annotations

import asyncio
import socket

from sandbar.coalesce import CoalescingTransport


async def _pair() -> tuple[CoalescingTransport, socket.socket, asyncio.AbstractEventLoop]:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    transport, _ = await loop.create_connection(asyncio.Protocol, sock=ours)
    theirs.setblocking(False)
    return CoalescingTransport(transport, loop), theirs, loop


async def _read(sock: socket.socket, loop: asyncio.AbstractEventLoop) -> bytes:
    return await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)


def test_one_turns_writes_leave_together_in_order() -> None:
    async def scenario() -> None:
        wrapped, theirs, loop = await _pair()
        for i in range(100):
            wrapped.write(b"%03d;" % i)
        await asyncio.sleep(0)  # the flush runs at the next turn
        got = await _read(theirs, loop)
        assert got == b"".join(b"%03d;" % i for i in range(100))
        wrapped.write(b"next")
        assert await _read(theirs, loop) == b"next"
        wrapped.close()
        theirs.close()

    asyncio.run(scenario())


def test_close_sends_what_was_written_before_it_and_abort_drops_it() -> None:
    async def scenario() -> None:
        wrapped, theirs, loop = await _pair()
        wrapped.write(b"goodbye")
        wrapped.close()
        assert await _read(theirs, loop) == b"goodbye"
        theirs.close()

        wrapped, theirs, loop = await _pair()
        wrapped.write(b"dropped")
        wrapped.abort()
        await asyncio.sleep(0.05)
        assert await _read(theirs, loop) == b""  # closed, nothing sent
        theirs.close()

    asyncio.run(scenario())


def test_everything_else_is_the_wrapped_transports() -> None:
    async def scenario() -> None:
        wrapped, theirs, _ = await _pair()
        assert wrapped.get_extra_info("socket") is not None
        assert not wrapped.is_closing()
        wrapped.close()
        theirs.close()

    asyncio.run(scenario())
