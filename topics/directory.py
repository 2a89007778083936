"""Who is connected: session details by id, learnt from the authorizer or the router."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from topics.session import SessionInfo

log = logging.getLogger("sandbar.topics")

Lookup = Callable[[int], Awaitable[Any]]


class SessionDirectory:
    """A bounded cache of :class:`SessionInfo`; misses ask the router (``wamp.session.get``).

    A session's entry outlives its leaving by ``linger`` seconds, so the
    ``on_unsubscribe`` hooks that its departure triggers still know who it was.
    """

    def __init__(self, size: int = 100_000, linger: float = 10.0) -> None:
        self._known: OrderedDict[int, SessionInfo] = OrderedDict()
        self._size, self._linger = size, linger
        self.lookup: Lookup | None = None

    def remember(self, info: SessionInfo) -> None:
        self._known[info.id] = info
        self._known.move_to_end(info.id)
        while len(self._known) > self._size:
            self._known.popitem(last=False)

    async def get(self, session_id: int) -> SessionInfo:
        info = self._known.get(session_id)
        if info is not None:
            return info
        details = None
        if self.lookup is not None:
            try:
                details = await self.lookup(session_id)
            except Exception as exc:
                log.debug("wamp.session.get(%s) failed: %s", session_id, exc)
        info = SessionInfo.from_details(details) if details else SessionInfo(id=session_id)
        if details:
            self.remember(info)
        return info

    def left(self, session_id: int) -> None:
        asyncio.get_running_loop().call_later(self._linger, self._known.pop, session_id, None)
