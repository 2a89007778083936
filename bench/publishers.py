"""The ways an event reaches the router, each as ``await send(key)`` on one asyncio loop.

``send`` returns once the path has taken the event: the router's acknowledgement (limit),
the ZeroMQ queue (bridge, fire-and-forget), the HTTP response (http-publisher, rest).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Protocol

import yaml
from autobahn.wamp.types import PublishOptions

from bridge.client import EventSender, SendError
from sandbar.wamp import BackendSession, RouterConnection, open_session
from tests.support.procs import SECRET, SHIPPED_BRIDGE_CONFIG

TOPIC = "articles"


class Publisher(Protocol):
    name: str
    window: int

    async def open(self) -> None: ...
    async def send(self, key: str) -> None: ...
    async def close(self) -> None: ...


class Limit:
    """A native AutobahnPython backend session: acknowledged publishes straight to the router."""

    name = "limit"

    def __init__(self, backend_url: str, window: int | None = None) -> None:
        self.connection = RouterConnection(url=backend_url, authid="bridge", ticket=SECRET)
        # By default as many in flight as the shipped bridge allows, so that limit vs
        # bridge compares the two paths, not two window sizes.
        self.window = window or int(
            yaml.safe_load(SHIPPED_BRIDGE_CONFIG.read_text())["publish"]["max_in_flight"]
        )
        self.session: BackendSession | None = None
        self.gone: asyncio.Future[None] | None = None

    async def open(self) -> None:
        joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.session, self.gone = await open_session(  # a plain AutobahnPython session
            self.connection, lambda s, d: joined.set_result(None), coalesce=False
        )
        await asyncio.wait_for(joined, 10)

    async def send(self, key: str) -> None:
        assert self.session is not None
        await self.session.publish(
            TOPIC,
            {"title": key},
            options=PublishOptions(acknowledge=True),
            id=key,
            name="article.created",
            ts=int(time.time() * 1000),
        )

    async def close(self) -> None:
        if self.session is not None and self.gone is not None and self.session.is_attached():
            self.session.leave()
            await asyncio.wait_for(asyncio.shield(self.gone), 5)  # its onLeave runs to the end


def _article(title: str) -> dict[str, object]:
    """An ``article.created`` that fits its schema (api/signals.py), which the bridge checks."""
    return {"id": 1, "title": title, "body": "b", "created_at": "2026-12-01T12:00:00Z"}


class Bridge:
    """The kit's EventSender (ZeroMQ, fire-and-forget) into the running bridge."""

    name = "bridge"

    def __init__(self, endpoint: str, window: int = 64) -> None:
        self.sender = EventSender(endpoint)
        self.window = window

    async def open(self) -> None:
        pass

    async def send(self, key: str) -> None:
        while True:
            try:
                self.sender.send("article.created", _article(key))
                return
            except SendError:  # the queue to the bridge is full: back off like a caller would
                await asyncio.sleep(0.001)

    async def close(self) -> None:
        self.sender.close()


class HttpPool:
    """A few keep-alive HTTP/1.1 connections: small enough not to be the bottleneck."""

    def __init__(self, port: int, size: int) -> None:
        self.port, self.size = port, size
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = (
            asyncio.Queue()
        )

    async def open(self) -> None:
        for _ in range(self.size):
            self._idle.put_nowait(None)

    async def post(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> bytes:
        data = json.dumps(body).encode()
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n{head}\r\n"
        ).encode() + data
        conn = await self._idle.get()
        try:
            for attempt in range(2):
                if conn is None:
                    conn = await asyncio.open_connection("127.0.0.1", self.port)
                reader, writer = conn
                writer.write(request)
                try:
                    status, response, keep = await _read_response(reader)
                    break
                except asyncio.IncompleteReadError as exc:
                    writer.close()
                    conn = None
                    if exc.partial or attempt:  # closed mid-answer: never resend
                        raise
            if not keep:
                writer.close()
                conn = None
            if status >= 300:
                raise RuntimeError(f"POST {path}: HTTP {status}: {response[:200]!r}")
            return response
        finally:
            self._idle.put_nowait(conn)

    async def close(self) -> None:
        while not self._idle.empty():
            conn = self._idle.get_nowait()
            if conn is not None:
                conn[1].close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    fields = {
        k.strip().lower(): v.strip().lower()
        for k, _, v in (h.partition(":") for h in head[1:] if h)
    }
    if fields.get("transfer-encoding") == "chunked":
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
    else:
        body = await reader.readexactly(int(fields.get("content-length", "0")))
    return status, body, fields.get("connection") != "close"


class HttpPublisher:
    """Crossbar's HTTP publisher service (``type: publisher``), role backend."""

    name = "http-publisher"

    def __init__(self, port: int, path: str = "/publish", window: int = 8) -> None:
        self.http, self.path, self.window = HttpPool(port, window), path, window

    async def open(self) -> None:
        await self.http.open()

    async def send(self, key: str) -> None:
        answer = await self.http.post(self.path, {"topic": TOPIC, "args": [{"title": key}]}, {})
        if b'"error"' in answer:  # WAMP errors come back as HTTP 200
            raise RuntimeError(f"http publisher refused: {answer[:200]!r}")

    async def close(self) -> None:
        await self.http.close()


class Rest:
    """POST /articles through the real API (gunicorn), which sends article.created;
    ``name``: which API (``rest`` on SQLite, ``rest-pg`` on PostgreSQL)."""

    def __init__(
        self, port: int, auth: dict[str, str], window: int = 8, name: str = "rest"
    ) -> None:
        self.http, self.auth, self.window, self.name = HttpPool(port, window), auth, window, name

    async def open(self) -> None:
        await self.http.open()

    async def send(self, key: str) -> None:
        await self.http.post("/articles", {"title": key, "body": "b"}, self.auth)

    async def close(self) -> None:
        await self.http.close()
