"""A small process supervisor for the development stack (``sandbar up``).

Why not honcho, supervisord or circus: honcho (foreman) stops everything when
one process exits, which is the opposite of what we want; supervisord and
circus are daemons with their own config files and control sockets. Here each
service runs in its own process group, its output is prefixed with its name,
a crash is restarted with capped exponential backoff while the others keep
running, a service that stays unhealthy is restarted too, and stopping
signals and reaps every group, so nothing is orphaned. Every service also
dies with the supervisor (``sandbar/lifetime.py``), even if it is SIGKILLed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from sandbar.lifetime import wrap
from sandbar.logs import as_json_line, log_format

log = logging.getLogger("sandbar.up")

ReadyCheck = Callable[[], Awaitable[bool]]

COLOURS = ["36", "33", "35", "32", "34", "31"]
#: a line longer than this is shown cut, with how much was cut
LINE_LIMIT = 16 * 1024
CHUNK = 64 * 1024
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: what is left of the grace once a second Ctrl-C hurries the stop
HURRIED_GRACE = 1.0
#: one health check that takes longer than this has failed
CHECK_TIMEOUT = 5.0


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
    #: when its check last passed (or it was started): the unhealthy clock
    healthy_at: float = 0.0


class Supervisor:
    def __init__(
        self,
        services: list[Service],
        *,
        stop_timeout: float = 10.0,
        health_interval: float = 10.0,
        unhealthy_after: float = 30.0,
    ) -> None:
        self.services = services
        self.stop_timeout = stop_timeout
        self.health_interval = health_interval
        self.unhealthy_after = unhealthy_after
        self._width = max(len(s.name) for s in services)
        self._tty = sys.stdout.isatty()
        self._json = log_format() == "json"
        self._stopping = False
        self._hurried = False

    # -- output -------------------------------------------------------------

    def _prefix(self, index: int, name: str) -> str:
        label = f"{name:<{self._width}} |"
        return f"\033[{COLOURS[index % len(COLOURS)]}m{label}\033[0m" if self._tty else label

    async def _relay(self, index: int, service: Service, stream: asyncio.StreamReader) -> None:
        """Copy a service's output to ours until it closes: if this stopped, the service
        would block as soon as its pipe is full, so no line and no write error ends it."""
        if self._json:  # each line is a JSON object naming its service: no prefix
            async for line in _lines(stream, LINE_LIMIT):
                _write(as_json_line(service.name, line) + "\n")
            return
        prefix = self._prefix(index, service.name)
        async for line in _lines(stream, LINE_LIMIT):
            _write(f"{prefix} {line}\n")

    # -- one service ----------------------------------------------------------

    async def _spawn(self, index: int, service: Service) -> asyncio.Task[None]:
        env = {**os.environ, **service.env, "PYTHONUNBUFFERED": "1"}
        process = await asyncio.create_subprocess_exec(
            *wrap(service.argv),  # dies with us, even if we are SIGKILLed
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: we can signal all its children
        )
        service.process = process
        service.healthy_at = time.monotonic()
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
            if self._stopping:  # the stop began while it was being started
                _signal_group(service.process.pid, signal.SIGKILL)

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

    # -- health -------------------------------------------------------------------

    async def _watch_health(self) -> None:
        """Restart a service whose check has failed for ``unhealthy_after`` seconds.

        A hung service (blocked, deadlocked, stopped) does not exit, so only its check
        tells. Checks go in start order and a round ends at the first failure: a service
        whose dependency (an earlier service) is down is not blamed, its clock restarts.
        """
        while True:
            await asyncio.sleep(self.health_interval)
            failing: Service | None = None
            for service in self.services:
                if failing is not None or await _passes(service):
                    service.healthy_at = time.monotonic()  # healthy, or not to blame
                else:
                    failing = service
            if failing is not None:
                unhealthy = time.monotonic() - failing.healthy_at
                if unhealthy >= self.unhealthy_after:
                    await self._restart(failing, unhealthy)

    async def _restart(self, service: Service, unhealthy: float) -> None:
        """Stop a running but unhealthy service; ``_keep_running`` starts it again."""
        process = service.process
        if process is None or process.returncode is not None or self._stopping:
            return  # crashed: already being restarted
        log.warning(
            "%s has failed its health check for %.0fs: restarting it", service.name, unhealthy
        )
        _signal_group(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self.stop_timeout)
        except TimeoutError:
            _signal_group(process.pid, signal.SIGKILL)

    # -- the whole stack ----------------------------------------------------------

    def serve(
        self, *, ready_timeout: float = 60.0, on_ready: Callable[[], None] | None = None
    ) -> int:
        """``run`` until SIGTERM or SIGINT; returns the exit code.

        The supervisor survives any number of further signals, since dying half-way
        through a stop would orphan the services not yet stopped. A repeated SIGTERM is
        the same request (GNU make forwards the SIGTERM its process group got, so under
        ``make up`` one ``kill -- -PGID`` arrives twice); a SIGINT while stopping is a
        second Ctrl-C, which hurries the stop.
        """

        async def main() -> int:
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()
            for signum in STOP_SIGNALS:
                loop.add_signal_handler(signum, self._on_signal, signum, stop)
            return await self.run(stop, ready_timeout=ready_timeout, on_ready=on_ready)

        try:
            return asyncio.run(main())
        finally:  # everything is stopped: a signal now must not turn the exit into a crash
            for signum in STOP_SIGNALS:
                signal.signal(signum, signal.SIG_IGN)

    def _on_signal(self, signum: int, stop: asyncio.Event) -> None:
        name = signal.Signals(signum).name
        if not stop.is_set():
            log.info("received %s, stopping every service", name)
            stop.set()
        elif signum == signal.SIGINT and not self._hurried:
            log.warning("received %s again: killing what is left in %.0fs", name, HURRIED_GRACE)
            self._hurry()
        else:
            log.info("received %s again: already stopping", name)

    def _hurry(self) -> None:
        """Cut the stop's grace to ``HURRIED_GRACE``: then SIGKILL every group."""
        self._stopping = self._hurried = True
        asyncio.get_running_loop().call_later(HURRIED_GRACE, self._kill_all)

    def _kill_all(self) -> None:
        for service in self.services:
            if service.process is not None:
                _signal_group(service.process.pid, signal.SIGKILL)

    async def run(
        self,
        stop: asyncio.Event,
        *,
        ready_timeout: float = 60.0,
        on_ready: Callable[[], None] | None = None,
    ) -> int:
        """Start services in order (each after the previous is ready), supervise until ``stop``."""
        watchers: list[asyncio.Task[None]] = []
        health: asyncio.Task[None] | None = None
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
            health = asyncio.ensure_future(self._watch_health())
            await stopper
            return 0
        except TimeoutError as exc:
            log.error("%s", exc)
            return 1
        finally:
            if health is not None:
                health.cancel()
            await self.stop_all()
            for watcher in watchers:
                watcher.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)

    async def stop_all(self) -> None:
        """SIGTERM every process group (in reverse start order), SIGKILL what is left
        after ``stop_timeout`` (sooner if hurried), then reap every group."""
        self._stopping = True
        running = [s for s in reversed(self.services) if s.process and s.process.returncode is None]
        for service in running:
            assert service.process is not None
            _signal_group(service.process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(
                asyncio.gather(*(s.process.wait() for s in running if s.process)),
                self.stop_timeout,
            )
        except TimeoutError:
            late = ", ".join(s.name for s in running if s.process and s.process.returncode is None)
            log.warning("%s did not stop in %.0fs: killing it", late, self.stop_timeout)
        for service in self.services:
            if service.process is not None:
                # The leader may be gone while its children (crossbar workers,
                # gunicorn workers) linger: kill whatever is left in the group.
                _signal_group(service.process.pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    await service.process.wait()
        log.info("all services stopped")


async def _passes(service: Service) -> bool:
    if service.ready is None:
        return True
    if service.process is None or service.process.returncode is not None:
        return False
    try:
        return bool(await asyncio.wait_for(service.ready(), CHECK_TIMEOUT))
    except Exception:
        return False


async def _lines(stream: asyncio.StreamReader, limit: int) -> AsyncIterator[str]:
    """Each line of ``stream`` as text; one longer than ``limit`` bytes is cut there.

    ``readline`` raises on a line over the reader's 64 KiB limit (and drops it); reading
    chunks never does, and memory stays bounded however long a line is.
    """
    head, cut = b"", 0
    while chunk := await stream.read(CHUNK):
        *ends, rest = chunk.split(b"\n")
        for end in ends:
            head, cut = _extend(head, cut, end, limit)
            yield _text(head, cut)
            head, cut = b"", 0
        head, cut = _extend(head, cut, rest, limit)
    if head or cut:
        yield _text(head, cut)


def _extend(head: bytes, cut: int, more: bytes, limit: int) -> tuple[bytes, int]:
    room = limit - len(head)
    return head + more[:room], cut + max(0, len(more) - room)


def _text(head: bytes, cut: int) -> str:
    text = head.decode(errors="replace").rstrip()
    return f"{text} [... {cut} more bytes]" if cut else text


def _write(text: str) -> None:
    """Our own stdout gone (a closed terminal, a reader that quit) must not end a relay."""
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.write(text)
        sys.stdout.flush()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
