"""Real AutobahnPython clients driven from synchronous tests (each on its own loop thread)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Self

from autobahn.asyncio.component import Component
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, SubscribeOptions

from sandbar.probe import call_backend
from sandbar.procs import SECRET
from sandbar.wamp import RouterConnection


@dataclass
class Event:
    topic: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class LoopThread:
    """An asyncio loop in a daemon thread; ``run`` executes a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Any, *args: Any, timeout: float = 30.0, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on the loop thread, awaiting its result if awaitable."""

        async def invoke() -> Any:
            result = fn(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return self.run(invoke(), timeout)

    def close(self) -> None:
        """Cancel what is still pending on the loop (reconnect timers), then stop it."""

        async def cancel_pending() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(cancel_pending(), timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def _transport(url: str, reconnect: bool) -> dict[str, Any]:
    transport: dict[str, Any] = {"url": url, "max_retries": -1 if reconnect else 0}
    if reconnect:
        transport.update(initial_retry_delay=0.1, max_retry_delay=0.5, retry_delay_growth=1.5)
    if url.startswith("rs://"):
        transport.update(type="rawsocket", serializer="msgpack")
    else:
        transport.update(serializers=["json"])
    return transport


class _Peer:
    """A real AutobahnPython session on its own loop thread; anonymous over WebSocket, or a
    backend principal (``authid``) over rawsocket."""

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        authid: str | None = None,
        reconnect: bool = True,
        ticket: str | None = None,
    ) -> None:
        """``authid`` alone: a backend principal (the backend secret); with ``ticket``: a
        browser signing in with that token. Several URLs (e.g. edge nodes): each reconnect
        tries the next."""
        self._thread = LoopThread()
        self._closed = False
        urls = [url] if isinstance(url, str) else list(url)
        transports = [_transport(each, reconnect) for each in urls]
        authentication = None
        if authid or ticket:
            authentication = {"ticket": {"authid": authid or "user", "ticket": ticket or SECRET}}
        self._component = Component(
            transports=transports, realm="sandbar", authentication=authentication
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        async def stop() -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.ensure_future(self._component.stop()), 3)

        try:
            self._thread.run(stop(), timeout=5)
        finally:
            self._thread.close()


class Subscriber(_Peer):
    """A session that stays subscribed to ``topics`` across reconnects."""

    def __init__(
        self,
        url: str | Sequence[str],
        topics: list[str],
        *,
        get_retained: bool = False,
        authid: str | None = None,
        ticket: str | None = None,
    ) -> None:
        super().__init__(url, authid=authid, ticket=ticket)
        self.url, self.topics, self.get_retained = url, topics, get_retained
        self.events: list[Event] = []
        self.joins = 0
        self._lock = threading.Lock()
        self._component.on("join", self._on_join)
        self._component.on("leave", self._on_leave)
        self._subscribed = threading.Event()

    async def _on_join(self, session: Any, details: Any) -> None:
        for topic in self.topics:
            options = SubscribeOptions(get_retained=self.get_retained)
            # Right after a router restart the authorizer may not be registered yet.
            for attempt in range(200):
                try:
                    await session.subscribe(self._collector(topic), topic, options=options)
                    break
                except ApplicationError as exc:
                    if exc.error != "wamp.error.authorization_failed" or attempt == 199:
                        raise
                    await asyncio.sleep(0.1)
        self.joins += 1
        self._subscribed.set()

    def _on_leave(self, session: Any, details: Any) -> None:
        self._subscribed.clear()

    def _collector(self, topic: str) -> Any:
        def on_event(*args: Any, **kwargs: Any) -> None:
            with self._lock:
                self.events.append(Event(topic, args, kwargs))

        return on_event

    def start(self, timeout: float = 15.0) -> Self:
        self._thread.loop.call_soon_threadsafe(self._component.start, self._thread.loop)
        if not self._subscribed.wait(timeout):
            raise TimeoutError(
                f"subscriber did not join and subscribe to {self.topics} at {self.url}"
            )
        return self

    def wait_subscribed(self, timeout: float = 15.0, joins: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._subscribed.is_set() and self.joins >= joins:
                return
            time.sleep(0.02)
        raise TimeoutError(f"subscriber did not (re)subscribe (joins={self.joins})")

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Event]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.events) >= count:
                    return list(self.events)
            time.sleep(0.01)
        with self._lock:
            got = len(self.events)
        raise TimeoutError(f"expected {count} events within {timeout}s, got {got}")

    def snapshot(self) -> list[Event]:
        with self._lock:
            return list(self.events)


def backend_call(backend_url: str, procedure: str, *args: Any, timeout: float = 5.0) -> Any:
    """Call a backend procedure (e.g. the bridge's stats) as the trusted 'topics' principal."""
    connection = RouterConnection(url=backend_url, authid="topics", ticket=SECRET)

    async def call() -> Any:
        return await call_backend(connection, procedure, *args, timeout=timeout)

    # In a thread of its own: the caller's thread may be running a loop (Playwright's sync API).
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, call()).result()


class Client(_Peer):
    """One plain session for trying things (subscribe, call, publish) and seeing the answer."""

    def __init__(self, url: str, *, authid: str | None = None, ticket: str | None = None) -> None:
        """Raises ApplicationError with the router's reason when the session is refused."""
        super().__init__(url, authid=authid, reconnect=False, ticket=ticket)
        self.events: list[Event] = []
        self.left: asyncio.Future[Any] = self._thread.loop.create_future()
        self._joined: asyncio.Future[Any] = self._thread.loop.create_future()
        self._component.on("join", self._on_join)
        self._component.on("leave", self._on_leave)
        self._thread.loop.call_soon_threadsafe(self._component.start, self._thread.loop)
        self.session = self._thread.run(self._wait_joined(), timeout=15)

    async def _on_join(self, session: Any, details: Any) -> None:
        if not self._joined.done():
            self._joined.set_result(session)

    def _on_leave(self, session: Any, details: Any) -> None:
        refusal = ApplicationError(details.reason, details.message)
        if not self._joined.done():
            self._joined.set_exception(refusal)
        if not self.left.done():
            self.left.set_result(details)

    def wait_left(self, timeout: float = 5.0) -> Any:
        """The close details once the router ends this session (e.g. signed out)."""

        async def wait() -> Any:
            return await asyncio.wait_for(asyncio.shield(self.left), timeout)

        return self._thread.run(wait(), timeout + 1)

    async def _wait_joined(self) -> Any:
        return await asyncio.wait_for(self._joined, 15)

    @property
    def id(self) -> int:
        return int(self.session.session_id)

    def subscribe(self, uri: str, *, match: str | None = None) -> None:
        """Subscribe (events land in ``self.events``); raises ApplicationError when denied."""

        def on_event(*args: Any, **kwargs: Any) -> None:
            self.events.append(Event(uri, args, kwargs))

        options = SubscribeOptions(match=match) if match else None
        self._thread.call(self.session.subscribe, on_event, uri, options=options)

    def call(self, uri: str, *args: Any, timeout: float = 30.0) -> Any:
        return self._thread.call(self.session.call, uri, *args, timeout=timeout)

    def publish(self, uri: str, *args: Any) -> Any:
        """An acknowledged publish; raises ApplicationError when refused."""
        options = PublishOptions(acknowledge=True)
        return self._thread.call(self.session.publish, uri, *args, options=options)

    def wait_for(self, count: int, timeout: float = 5.0, name: str | None = None) -> list[Event]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [e for e in self.events if name is None or e.kwargs.get("name") == name]
            if len(got) >= count:
                return got
            time.sleep(0.01)
        raise TimeoutError(f"expected {count} events named {name}, got {self.events}")
