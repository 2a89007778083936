"""Closes browser connections that hold no WAMP session (in the router and proxy workers).

Crossbar keeps a WebSocket open after GOODBYE (``crossbar/router/session.py``: "WAMP allows
to reattach a session"), and one that never sends HELLO stays open too: as long as it
answers pings, nothing ends either. Each costs the worker a descriptor and 20-70 KB, so any
client could hold thousands (a reconnecting client that only said GOODBYE left one behind at
every reconnect, which is how the soak found it). Browsers' AutobahnJS and AutobahnPython
close the connection after GOODBYE and send HELLO at once, so a connection without a session
for ``timeout`` seconds is closed, with a reason that says what was expected.

A sweep every quarter of the timeout looks at every open connection's session: two
attribute reads each, 8 ms for 20,000 connections (a reactor pause every 7.5 s at the
default), instead of a timer per connection.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from typing import Annotated, Any
from weakref import WeakKeyDictionary

from autobahn.wamp import websocket
from pydantic import AfterValidator, Field
from twisted.logger import Logger

#: seconds without a session before a connection is closed, unless configured
DEFAULT_SESSIONLESS_TIMEOUT = 30.0
#: the shortest timeout accepted: signing in takes a round trip and a ticket check
MIN_SESSIONLESS_TIMEOUT = 2.0
#: how often the sweep runs, as a share of the timeout
SWEEPS_PER_TIMEOUT = 4
#: a normal closure: the client did nothing wrong at the WebSocket level
CLOSE_CODE = 1000
_NOT_SET = object()
log = Logger()


def _not_too_short(value: float) -> float:
    if 0 < value < MIN_SESSIONLESS_TIMEOUT:
        raise ValueError(
            f"must be 0 (never close) or at least {MIN_SESSIONLESS_TIMEOUT:g} s: a client "
            "needs time to sign in (HELLO, the ticket check, WELCOME)"
        )
    return value


#: a config field: seconds a connection may hold no session (0: forever), checked at load
SessionlessTimeout = Annotated[float, Field(ge=0, le=3600), AfterValidator(_not_too_short)]


def close_reason(timeout: float) -> str:
    """Sent in the close frame (at most 123 bytes): what the client should have done."""
    return f"no WAMP session for {timeout:g} s: send HELLO once connected, close after GOODBYE"


def has_session(protocol: Any) -> bool:
    """Does this WAMP-over-WebSocket connection carry a joined session?

    A router session's id is None before WELCOME and again after GOODBYE; a proxy's
    frontend session keeps its id after GOODBYE but drops its session at the router."""
    session = getattr(protocol, "_session", None)
    if session is None or getattr(session, "_session_id", None) is None:
        return False
    return getattr(session, "_backend_session", _NOT_SET) is not None


class SessionlessGuard:
    """The open connections and since when each has had no session (None: it has one)."""

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        #: connections closed for want of a session, since the worker started
        self.closed = 0
        self._clock = clock
        self._since: WeakKeyDictionary[Any, float | None] = WeakKeyDictionary()

    def opened(self, protocol: Any) -> None:
        self._since[protocol] = self._clock()

    def lost(self, protocol: Any) -> None:
        self._since.pop(protocol, None)

    def __len__(self) -> int:
        return len(self._since)

    def expired(self) -> list[Any]:
        """Update every connection's mark; return (and forget) those past the timeout."""
        now = self._clock()
        expired = []
        for protocol, since in list(self._since.items()):
            if has_session(protocol):
                if since is not None:
                    self._since[protocol] = None
            elif since is None:
                self._since[protocol] = now
            elif now - since >= self.timeout:
                expired.append(protocol)
                del self._since[protocol]
        return expired

    def sweep(self) -> int:
        """Close the connections past the timeout; how many."""
        expired = self.expired()
        reason = close_reason(self.timeout)
        for protocol in expired:
            try:
                protocol.sendClose(code=CLOSE_CODE, reason=reason)
            except Exception:  # one connection's fault must not stop the sweeps for all
                log.failure("could not close a connection without a session: dropping it")
                with contextlib.suppress(Exception):
                    protocol.dropConnection(abort=True)
        self.closed += len(expired)
        if expired:
            log.info(
                "closed {count} connection(s) that held no WAMP session for {timeout:g} s",
                count=len(expired),
                timeout=self.timeout,
            )
        return len(expired)


def installed() -> SessionlessGuard | None:
    """This worker's guard, once installed. Kept on the patched class, not in this module:
    Crossbar's component loader may reload modules, which would forget a module global."""
    return getattr(websocket.WampWebSocketServerProtocol, "_sandbar_sessionless", None)


def _start_sweeping(sessionless: SessionlessGuard) -> None:
    from twisted.internet.task import LoopingCall

    sweeper = LoopingCall(sessionless.sweep)
    sweeper.start(sessionless.timeout / SWEEPS_PER_TIMEOUT, now=False)


def close_sessionless(timeout: float) -> None:
    """Close WAMP-over-WebSocket connections without a session for ``timeout`` seconds
    (0: never). Installing again only changes the timeout."""
    if not timeout:
        return
    guard = installed()
    if guard is not None:
        guard.timeout = timeout
        return
    sessionless = SessionlessGuard(timeout)
    cls = websocket.WampWebSocketServerProtocol
    on_open, on_close = cls.onOpen, cls.onClose
    sweeping: list[bool] = []

    @functools.wraps(on_open)
    def onOpen(self: Any) -> None:
        if not sweeping:  # the reactor runs by the time a connection opens
            sweeping.append(True)
            _start_sweeping(sessionless)
        sessionless.opened(self)
        on_open(self)

    @functools.wraps(on_close)
    def onClose(self: Any, wasClean: bool, code: int, reason: str | None) -> None:
        sessionless.lost(self)
        on_close(self, wasClean, code, reason)

    cls._sandbar_sessionless = sessionless  # type: ignore[attr-defined]
    cls.onOpen = onOpen  # type: ignore[method-assign]
    cls.onClose = onClose  # type: ignore[method-assign]
