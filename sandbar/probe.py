"""Short-lived backend sessions: call one procedure and leave (readiness checks, tools, tests)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from sandbar.wamp import ApplicationSession, RouterConnection, close_connection, open_session


async def call_backend(
    connection: RouterConnection, procedure: str, *args: Any, timeout: float = 5.0
) -> Any:
    """Join with the backend ticket, call ``procedure``, leave; return its result."""
    loop = asyncio.get_running_loop()
    result: asyncio.Future[Any] = loop.create_future()

    async def on_join(session: ApplicationSession, details: Any) -> None:
        try:
            answer = await session.call(procedure, *args)
        except Exception as exc:
            if not result.done():
                result.set_exception(exc)
        else:
            if not result.done():
                result.set_result(answer)

    session, gone = await open_session(connection, on_join, timeout=timeout)
    try:
        await asyncio.wait_for(
            asyncio.wait({result, gone}, return_when=asyncio.FIRST_COMPLETED), timeout
        )
        if not result.done():
            raise ConnectionError(f"the router closed the session before '{procedure}' answered")
        return result.result()
    finally:
        if session.is_attached():
            with contextlib.suppress(Exception):
                session.leave()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(gone), 2)
        close_connection(session)
