"""Readiness checks for each service, shared by ``sandbar up`` and ``sandbar health``."""

from __future__ import annotations

import asyncio
import urllib.request

from sandbar.probe import call_backend
from sandbar.wamp import RouterConnection


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


async def http_ready(url: str) -> bool:
    """The router's web transport (``/``) or the API's ``/healthz`` answers 200."""
    return await asyncio.to_thread(_http_ok, url)


async def router_ready(backend: RouterConnection) -> bool:
    """A router with no browsers' transport (a core node) answers its backends."""
    return isinstance(await call_backend(backend, "wamp.session.count", timeout=2), int)


async def topics_ready(backend: RouterConnection) -> bool:
    """The topics service is joined and answers ``sandbar.topics.list``."""
    return isinstance(await call_backend(backend, "sandbar.topics.list", timeout=2), list)


async def bridge_ready(backend: RouterConnection) -> bool:
    """The bridge is joined, its own router session is attached, and it still takes events
    from ZeroMQ (a bridge whose intake died publishes nothing, so it is not ready)."""
    stats = await call_backend(backend, "sandbar.bridge.stats", timeout=2)
    if not stats.get("intake_running"):
        raise RuntimeError(f"the bridge's intake has stopped ({stats.get('intake_error')})")
    return bool(stats["connected"])
