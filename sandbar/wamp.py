"""The backend services' connection to the router: ticket auth, reconnect forever."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal
from urllib.parse import urlsplit

from autobahn.asyncio.component import Component
from autobahn.asyncio.wamp import ApplicationSession
from pydantic import Field, SecretStr, field_validator

from sandbar.config import StrictModel

log = logging.getLogger("sandbar.wamp")

SessionHook = Callable[[ApplicationSession, Any], Awaitable[None] | None]


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

    def transport(self) -> dict[str, Any]:
        """The transport entry in Autobahn's Component format."""
        transport: dict[str, Any] = {
            "url": self.url,
            "max_retries": -1,
            "initial_retry_delay": self.retry_initial_delay,
            "max_retry_delay": self.retry_max_delay,
            "retry_delay_growth": 2.0,
            "retry_delay_jitter": 0.1,
        }
        if self.url.startswith("rs"):
            transport.update(type="rawsocket", serializer=self.serializer)
        else:
            transport.update(type="websocket", serializers=[self.serializer])
        return transport


def make_component(
    connection: RouterConnection,
    *,
    on_join: SessionHook,
    on_leave: SessionHook | None = None,
) -> Component:
    """An Autobahn Component that authenticates by ticket and reconnects with capped backoff."""
    component = Component(
        transports=[connection.transport()],
        realm=connection.realm,
        authentication={
            "ticket": {
                "authid": connection.authid,
                "ticket": connection.ticket.get_secret_value(),
            }
        },
    )
    component.on("join", on_join)
    if on_leave is not None:
        component.on("leave", on_leave)
    return component


async def stop_component(
    component: Component, running: asyncio.Future[Any], timeout: float = 5
) -> None:
    """Leave the realm and let the component finish (cancelling it mid-way makes Autobahn
    log spurious tracebacks)."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.ensure_future(component.stop()), timeout)
    try:
        await asyncio.wait_for(asyncio.shield(running), timeout)
    except Exception as exc:  # not connected, or it ended with an error: either way it is over
        log.debug("component ended: %r", exc)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
