"""Short-lived backend sessions: call one procedure and leave (readiness checks, tools, tests)."""

from __future__ import annotations

import asyncio
from typing import Any

from autobahn.asyncio.rawsocket import WampRawSocketClientFactory
from autobahn.asyncio.wamp import ApplicationSession
from autobahn.wamp.types import ComponentConfig

from sandbar.wamp import RouterConnection


class _CallOnce(ApplicationSession):
    def __init__(
        self,
        config: ComponentConfig,
        connection: RouterConnection,
        procedure: str,
        args: tuple[Any, ...],
        done: asyncio.Future[Any],
    ) -> None:
        super().__init__(config)
        self._connection, self._procedure, self._args, self._done = (
            connection,
            procedure,
            args,
            done,
        )

    def onConnect(self) -> None:
        self.join(self._connection.realm, authmethods=["ticket"], authid=self._connection.authid)

    def onChallenge(self, challenge: Any) -> str:
        return self._connection.ticket.get_secret_value()

    async def onJoin(self, details: Any) -> None:
        try:
            result = await self.call(self._procedure, *self._args)
        except Exception as exc:
            if not self._done.done():
                self._done.set_exception(exc)
        else:
            if not self._done.done():
                self._done.set_result(result)
        self.leave()

    def onLeave(self, details: Any) -> None:
        if not self._done.done():
            self._done.set_exception(ConnectionError(f"session left: {details.reason}"))
        self.disconnect()


async def call_backend(
    connection: RouterConnection, procedure: str, *args: Any, timeout: float = 5.0
) -> Any:
    """Connect over rawsocket with the backend ticket, call ``procedure``, return its result."""
    if not connection.url.startswith("rs://"):
        raise ValueError("call_backend needs an rs:// router URL")
    host, _, port = connection.url.removeprefix("rs://").rstrip("/").rpartition(":")
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()
    config = ComponentConfig(connection.realm)
    factory = WampRawSocketClientFactory(
        lambda: _CallOnce(config, connection, procedure, args, done),
        serializer=_serializer(connection.serializer),
    )
    transport, _ = await asyncio.wait_for(loop.create_connection(factory, host, int(port)), timeout)
    try:
        return await asyncio.wait_for(done, timeout)
    finally:
        transport.close()


def _serializer(name: str) -> Any:
    from autobahn.wamp import serializer

    return {
        "msgpack": serializer.MsgPackSerializer,
        "cbor": serializer.CBORSerializer,
        "json": serializer.JsonSerializer,
    }[name]()


__all__ = ["call_backend"]
