"""The backend services' connection to the router: ticket auth, reconnect forever."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, Literal
from urllib.parse import urlsplit

from autobahn.asyncio.rawsocket import WampRawSocketClientFactory
from autobahn.asyncio.wamp import ApplicationSession
from autobahn.asyncio.websocket import WampWebSocketClientFactory
from autobahn.wamp.serializer import CBORSerializer, JsonSerializer, MsgPackSerializer
from autobahn.wamp.types import ComponentConfig
from pydantic import Field, SecretStr, field_validator

from sandbar.coalesce import coalesce_writes
from sandbar.config import StrictModel

log = logging.getLogger("sandbar.wamp")

SessionHook = Callable[[ApplicationSession, Any], Awaitable[None] | None]

_SERIALIZERS: dict[str, Callable[[], Any]] = {
    "msgpack": MsgPackSerializer,
    "cbor": CBORSerializer,
    "json": JsonSerializer,
}


class RouterConnection(StrictModel):
    """How a backend service reaches the router."""

    url: str = "rs://127.0.0.1:8081"
    realm: str = "sandbar"
    authid: str
    ticket: SecretStr
    serializer: Literal["msgpack", "cbor", "json"] = "msgpack"
    retry_initial_delay: float = Field(0.25, gt=0)
    retry_max_delay: float = Field(5.0, gt=0)

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in {"rs", "rss", "ws", "wss"} or not parts.hostname or not parts.port:
            raise ValueError(
                f"'{url}' is not a router URL: use rs://host:port (rawsocket, recommended "
                "for backends) or ws://host:port/ws"
            )
        return url


class BackendSession(ApplicationSession):
    """A session that joins with the backend ticket and reports its life to hooks."""

    def __init__(
        self,
        connection: RouterConnection,
        on_join: SessionHook,
        on_leave: SessionHook | None,
        gone: asyncio.Future[None],
    ) -> None:
        super().__init__(ComponentConfig(connection.realm))
        self._connection, self._on_join, self._on_leave, self._gone = (
            connection,
            on_join,
            on_leave,
            gone,
        )
        self.joined = False
        self.wire: asyncio.BaseTransport | None = None

    def onConnect(self) -> None:
        self.join(self._connection.realm, authmethods=["ticket"], authid=self._connection.authid)

    def onChallenge(self, challenge: Any) -> str:
        return self._connection.ticket.get_secret_value()

    async def onJoin(self, details: Any) -> None:
        self.joined = True
        try:
            result = self._on_join(self, details)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("setting up the session failed; reconnecting")
            self.leave("wamp.close.internal_error")

    async def onLeave(self, details: Any) -> None:
        if not self.joined and details.reason in _REFUSED:
            log.error(
                "the router refused authid '%s' (%s: %s): check SANDBAR_BACKEND_SECRET matches "
                "the router's",
                self._connection.authid,
                details.reason,
                details.message,
            )
        await super().onLeave(details)  # fails outstanding requests, then disconnects
        if self.joined and self._on_leave is not None:
            result = self._on_leave(self, details)
            if inspect.isawaitable(result):
                await result

    def onDisconnect(self) -> None:
        super().onDisconnect()
        if not self._gone.done():
            self._gone.set_result(None)


JOIN_TIMEOUT = 10.0  # seconds from TCP connect to joined realm before giving up on a connection

_REFUSED = {
    "wamp.error.not_authorized",
    "wamp.error.authentication_failed",
    "wamp.error.no_such_principal",
    "wamp.error.no_auth_method",
}


async def open_session(
    connection: RouterConnection,
    on_join: SessionHook,
    on_leave: SessionHook | None = None,
    timeout: float = 10.0,
    coalesce: bool = True,
) -> tuple[BackendSession, asyncio.Future[None]]:
    """Connect once; returns the session and a future that resolves when it is gone.
    ``coalesce``: what is sent in one loop turn leaves in one write (sandbar/coalesce.py);
    off, every message is its own write, as with a plain AutobahnPython session."""
    loop = asyncio.get_running_loop()
    gone: asyncio.Future[None] = loop.create_future()
    session = BackendSession(connection, on_join, on_leave, gone)
    parts = urlsplit(connection.url)
    factory: Any
    if parts.scheme in ("rs", "rss"):
        factory = WampRawSocketClientFactory(
            lambda: session, serializer=_SERIALIZERS[connection.serializer]()
        )
    else:
        factory = WampWebSocketClientFactory(
            lambda: session,
            url=connection.url,
            serializers=[_SERIALIZERS[connection.serializer]()],
        )

    def watched_protocol() -> Any:
        # The session hears of a lost connection only once it has attached; watch the
        # protocol from birth, so a connection dropped mid-handshake is noticed too.
        protocol = factory()
        connection_lost = protocol.connection_lost

        def lost(exc: Exception | None) -> None:
            try:
                connection_lost(exc)
            finally:
                if not gone.done():
                    gone.set_result(None)

        protocol.connection_lost = lost
        if coalesce:
            coalesce_writes(protocol, loop)
        return protocol

    transport, _ = await asyncio.wait_for(
        loop.create_connection(
            watched_protocol,
            str(parts.hostname),
            parts.port or 0,
            ssl=parts.scheme in ("rss", "wss") or None,
        ),
        timeout,
    )
    session.wire = transport
    return session, gone


async def stay_connected(
    connection: RouterConnection,
    stop: asyncio.Event,
    *,
    on_join: SessionHook,
    on_leave: SessionHook | None = None,
) -> None:
    """Keep one session joined until ``stop``: reconnect forever with capped exponential
    backoff (reset once a session has joined), then leave cleanly."""
    delay = connection.retry_initial_delay
    stopping: asyncio.Future[bool] = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            try:
                session, gone = await open_session(connection, on_join, on_leave)
            except (OSError, TimeoutError) as exc:
                log.warning(
                    "router at %s unreachable (%s); retrying in %.2fs",
                    connection.url,
                    exc or type(exc).__name__,
                    delay,
                )
            else:
                ended: set[asyncio.Future[Any]] = {gone, stopping}
                await asyncio.wait(ended, timeout=JOIN_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
                if not session.joined and not gone.done() and not stop.is_set():
                    log.warning(
                        "no WAMP session within %ss of connecting; dropping the connection",
                        JOIN_TIMEOUT,
                    )
                    close_connection(session)
                await asyncio.wait(ended, return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set():
                    await _leave(session, gone)
                    return
                if session.joined:
                    delay = connection.retry_initial_delay
                log.warning("router connection closed; reconnecting in %.2fs", delay)
            jitter = 1 + random.uniform(-0.1, 0.1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(stopping), delay * jitter)
            delay = min(delay * 2, connection.retry_max_delay)
    finally:
        stopping.cancel()


async def _leave(session: BackendSession, gone: asyncio.Future[None], timeout: float = 3.0) -> None:
    if session.is_attached():
        with contextlib.suppress(Exception):
            session.leave()
    try:
        await asyncio.wait_for(asyncio.shield(gone), timeout)
    except TimeoutError:
        close_connection(session)


def close_connection(session: BackendSession) -> None:
    """Drop the TCP connection under a session, whatever state it is in."""
    if session.wire is not None:
        session.wire.abort()  # type: ignore[attr-defined]
