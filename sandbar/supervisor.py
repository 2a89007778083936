"""A small process supervisor for the development stack (``sandbar up``).

Why not honcho, supervisord or circus: honcho (foreman) stops everything when
one process exits, which is the opposite of what we want; supervisord and
circus are daemons with their own config files and control sockets. Here each
service runs in its own process group, its output is prefixed with its name,
a crash is restarted with capped exponential backoff while the others keep
running, and stopping signals and reaps every group, so nothing is orphaned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger("sandbar.up")

ReadyCheck = Callable[[], Awaitable[bool]]

COLOURS = ["36", "33", "35", "32", "34", "31"]


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ready: ReadyCheck | None = None
    #: backoff after a crash: doubles from ``restart_delay`` up to ``max_restart_delay``
    restart_delay: float = 1.0
    max_restart_delay: float = 30.0
    #: a run this long counts as healthy and resets the backoff
    stable_after: float = 30.0
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0


class Supervisor:
    def __init__(self, services: list[Service], *, stop_timeout: float = 10.0) -> None:
        self.services = services
        self.stop_timeout = stop_timeout
        self._width = max(len(s.name) for s in services)
        self._tty = sys.stdout.isatty()
        self._stopping = False

    # -- output -------------------------------------------------------------

    def _prefix(self, index: int, name: str) -> str:
        label = f"{name:<{self._width}} |"
        return f"\033[{COLOURS[index % len(COLOURS)]}m{label}\033[0m" if self._tty else label

    async def _relay(self, index: int, service: Service, stream: asyncio.StreamReader) -> None:
        prefix = self._prefix(index, service.name)
        while line := await stream.readline():
            sys.stdout.write(f"{prefix} {line.decode(errors='replace').rstrip()}\n")
            sys.stdout.flush()

    # -- one service ----------------------------------------------------------

    async def _spawn(self, index: int, service: Service) -> asyncio.Task[None]:
        env = {**os.environ, **service.env, "PYTHONUNBUFFERED": "1"}
        process = await asyncio.create_subprocess_exec(
            *service.argv,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: we can signal all its children
        )
        service.process = process
        assert process.stdout is not None
        log.info("started %s (pid %d)", service.name, process.pid)
        return asyncio.ensure_future(self._relay(index, service, process.stdout))

    async def _keep_running(self, index: int, service: Service, first: asyncio.Task[None]) -> None:
        relay: asyncio.Task[None] | None = first
        delay = service.restart_delay
        while True:
            started = time.monotonic()
            assert service.process is not None
            code = await service.process.wait()
            if self._stopping:
                return
            # Whatever the dead leader left behind (workers) would hold its ports.
            _signal_group(service.process.pid, signal.SIGKILL)
            if relay is not None:
                await relay
            if time.monotonic() - started >= service.stable_after:
                delay = service.restart_delay
            service.restarts += 1
            log.warning(
                "%s exited with code %s; restart #%d in %.1fs",
                service.name,
                code,
                service.restarts,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, service.max_restart_delay)
            if self._stopping:
                return
            relay = await self._spawn(index, service)

    async def wait_ready(self, service: Service, timeout: float) -> None:
        if service.ready is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if await service.ready():
                    log.info("%s is ready", service.name)
                    return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"{service.name} was not ready after {timeout:.0f}s; see its log above")

    # -- the whole stack ----------------------------------------------------------

    async def run(
        self,
        stop: asyncio.Event,
        *,
        ready_timeout: float = 60.0,
        on_ready: Callable[[], None] | None = None,
    ) -> int:
        """Start services in order (each after the previous is ready), supervise until ``stop``."""
        watchers: list[asyncio.Task[None]] = []
        stopper = asyncio.ensure_future(stop.wait())
        try:
            for index, service in enumerate(self.services):
                relay = await self._spawn(index, service)
                watchers.append(asyncio.ensure_future(self._keep_running(index, service, relay)))
                starting = asyncio.ensure_future(self.wait_ready(service, ready_timeout))
                await asyncio.wait({starting, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set():
                    starting.cancel()
                    return 0
                starting.result()
            if on_ready is not None:
                on_ready()
            await stopper
            return 0
        except TimeoutError as exc:
            log.error("%s", exc)
            return 1
        finally:
            await self.stop_all()
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)

    async def stop_all(self) -> None:
        """SIGTERM every process group (in reverse start order), then SIGKILL stragglers."""
        self._stopping = True
        running = [s for s in reversed(self.services) if s.process and s.process.returncode is None]
        for service in running:
            assert service.process is not None
            _signal_group(service.process.pid, signal.SIGTERM)
        for service in running:
            assert service.process is not None
            try:
                await asyncio.wait_for(service.process.wait(), self.stop_timeout)
            except TimeoutError:
                log.warning("%s did not stop in %.0fs: killing it", service.name, self.stop_timeout)
        for service in self.services:
            if service.process is not None:
                # The leader may be gone while its children (crossbar workers,
                # gunicorn workers) linger: kill whatever is left in the group.
                _signal_group(service.process.pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    await service.process.wait()
        log.info("all services stopped")


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
