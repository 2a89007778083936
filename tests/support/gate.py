"""A TCP relay on loopback that a test can close and reopen.

Used to decide *when* a real client may reach the real router again, so a test
can order reconnections deterministically (subscriber first, then bridge).
"""

from __future__ import annotations

import asyncio
import contextlib

from tests.support.wamp import LoopThread


class Gate:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.is_open = True
        self._thread = LoopThread()
        self._server: asyncio.AbstractServer = self._thread.run(
            asyncio.start_server(self._relay, "127.0.0.1", 0)
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.is_open:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    def close(self) -> None:
        self.is_open = False

    def open(self) -> None:
        self.is_open = True

    def stop(self) -> None:
        self._server.close()
        self._thread.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
