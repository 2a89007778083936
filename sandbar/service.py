"""Run an asyncio service until SIGTERM or SIGINT, then let it shut down cleanly."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from sandbar.heap import freeze_startup_heap

log = logging.getLogger("sandbar.service")

Main = Callable[[asyncio.Event], Awaitable[None]]


def run_until_signalled(main: Main) -> None:
    """Run ``main(stop)`` on a new event loop; a signal sets ``stop`` for a graceful exit.

    A second signal while shutting down is honoured at once (the default handler).
    """

    async def runner() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_signal(signum: int) -> None:
            log.info("received %s, shutting down", signal.Signals(signum).name)
            stop.set()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        await main(stop)

    freeze_startup_heap()  # everything built so far lives as long as the service
    asyncio.run(runner())
