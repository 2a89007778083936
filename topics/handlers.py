"""Calling topic code: sync or async, with its answer normalised and its failures contained."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("sandbar.topics")


class Reject(Exception):
    """Refuse a subscription or a client message; ``reason`` is shown to the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class HandlerFailed(Exception):
    """Topic code raised; already logged with the URI and session."""


async def call_hook(hook: Callable[..., Any], *args: Any, where: str, **params: Any) -> Any:
    """Run ``hook`` (awaiting it if async). ``Reject`` passes through; any other error is
    logged with ``where`` (topic URI and session) and raised as HandlerFailed."""
    try:
        result = hook(*args, **params)
        if inspect.isawaitable(result):
            result = await result
        return result
    except Reject:
        raise
    except Exception as exc:
        log.exception("error in %s: %s", where, exc)
        raise HandlerFailed(where) from exc
