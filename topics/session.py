"""What topic code receives as ``session``: who the client is, and how to answer it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict, Unpack

from sandbar.router_proxies import PROXY_AUTHMETHODS


class Addressing(TypedDict, total=False):
    """Who gets an event topic code publishes (default: every subscriber of the topic)."""

    name: str  # the event's name in its kwargs (default "message")
    sessions: list[int]  # only these sessions
    authids: list[str]  # only these users, on every tab
    exclude_sessions: list[int]
    exclude_authids: list[str]


class Runtime(Protocol):
    """What a running topics service offers topic code."""

    def publish(
        self, uri: str, payload: Any, **addressing: Unpack[Addressing]
    ) -> asyncio.Future[int | None]: ...

    async def subscriber_count(self, uri: str) -> int: ...

    def presence(self, uri: str) -> list[dict[str, Any]]:
        """Who is on ``uri`` (a topic declared with ``presence=``): one entry per user."""
        ...

    @property
    def settings(self) -> Mapping[str, Any]:
        """The service's settings topic code may read (``api_url``, …); never secrets."""
        ...


def client_authmethod(details: Mapping[str, Any]) -> str | None:
    """How the client signed in. Behind a proxy worker the router only knows how the proxy
    did (``*-proxy``), and Crossbar drops the client's own method on the way; the role
    tells it, since only anonymous sign-in gives the role "anonymous" (.crossbar/config.yaml)
    and the ticket authenticator never does (topics/gate.py USER_ROLES)."""
    authmethod = details.get("authmethod")
    if authmethod in PROXY_AUTHMETHODS:
        return "anonymous" if details.get("authrole") == "anonymous" else "ticket"
    return authmethod if isinstance(authmethod, str) else None


@dataclass(frozen=True)
class SessionInfo:
    """The client's identity as the router knows it."""

    id: int
    authid: str | None = None
    authrole: str | None = None
    authmethod: str | None = None
    authprovider: str | None = None
    authextra: Mapping[str, Any] = field(default_factory=dict)
    transport: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_details(cls, details: Mapping[str, Any]) -> SessionInfo:
        """From the session details the router passes to the authorizer or ``wamp.session.get``.

        An anonymous session's authextra is whatever its HELLO claimed (Crossbar keeps
        it, and proxy workers forward it), so topic code gets ``{}`` instead: only a
        signed-in session's authextra (from the API, via the authenticator) is worth
        reading. ``authmethod`` is the client's, also behind a proxy worker."""
        authmethod = client_authmethod(details)
        return cls(
            id=int(details["session"]),
            authid=details.get("authid"),
            authrole=details.get("authrole"),
            authmethod=authmethod,
            authprovider=details.get("authprovider"),
            authextra={} if authmethod == "anonymous" else details.get("authextra") or {},
            transport=details.get("transport") or {},
        )

    @property
    def expires_at(self) -> float | None:
        """When this session's token expires (unix seconds), if it signed in with one."""
        value = self.authextra.get("expires_at") if self.authmethod == "ticket" else None
        return float(value) if isinstance(value, (int, float)) else None


@dataclass(frozen=True)
class Session(SessionInfo):
    """A client seen from one topic (``uri``): ``send`` answers it alone, ``publish`` tells all.

    Both schedule the event at once and return a future, so sync handlers may call
    them without awaiting.
    """

    uri: str = ""
    runtime: Runtime | None = field(default=None, repr=False, compare=False)

    @classmethod
    def bind(cls, info: SessionInfo, uri: str, runtime: Runtime | None) -> Session:
        fields = {name: getattr(info, name) for name in SessionInfo.__dataclass_fields__}
        return cls(**fields, uri=uri, runtime=runtime)

    def send(self, payload: Any, *, name: str = "message") -> asyncio.Future[int | None]:
        """Send to this session only, on this topic (a welcome, a private answer)."""
        return self._runtime().publish(self.uri, payload, name=name, sessions=[self.id])

    def publish(
        self, payload: Any, *, name: str = "message", exclude_me: bool = False
    ) -> asyncio.Future[int | None]:
        """Send to every subscriber of this topic, optionally not to this session."""
        exclude = [self.id] if exclude_me else []
        return self._runtime().publish(self.uri, payload, name=name, exclude_sessions=exclude)

    async def subscriber_count(self) -> int:
        """How many sessions are subscribed to this topic now (the router's count)."""
        return await self._runtime().subscriber_count(self.uri)

    def presence(self) -> list[dict[str, Any]]:
        """Who is on this topic, one ``{"authid", "extra"}`` per user however many tabs
        (a topic declared with ``presence=``; empty otherwise)."""
        return self._runtime().presence(self.uri)

    @property
    def settings(self) -> Mapping[str, Any]:
        """The topics service's settings, e.g. ``session.settings["api_url"]``."""
        return self._runtime().settings

    def _runtime(self) -> Runtime:
        if self.runtime is None:
            raise RuntimeError("this session is not bound to a running topics service")
        return self.runtime
