"""The benchmarks' light WebSocket subscriber (bench/light.py) against the real router."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

from bench.light import LightSubscriber
from tests.support.procs import Router

_ESTABLISHED = "01"


def _established_at(port: int, peers: set[int]) -> int:
    """The router's sockets on ``port`` still connected to one of these client ports
    (IPv4, from /proc/net/tcp: the router's own side of each connection)."""
    count = 0
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        local, remote, state = fields[1], fields[2], fields[3]
        if int(local.split(":")[1], 16) == port and state == _ESTABLISHED:
            count += int(remote.split(":")[1], 16) in peers
    return count


def test_leaving_subscribers_close_their_connections_at_the_router(router: Router) -> None:
    """Crossbar keeps a connection open after GOODBYE, so a subscriber that only said
    GOODBYE left an idle connection in the router worker for each reconnect: `make soak`'s
    churn grew the worker's memory by ~70 KB per reconnect. Leaving must close it."""
    url = urlsplit(router.ws_url)
    host, port = str(url.hostname), int(url.port or 80)

    async def join_and_leave() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        sessions, clients = [], set()
        for _ in range(20):
            transport, session = await loop.create_connection(
                lambda: LightSubscriber(host, port, url.path, "articles", print, print),
                host,
                port,
            )
            await asyncio.wait_for(session.ready, 30)
            sessions.append(session)
            clients.add(transport.get_extra_info("sockname")[1])
        joined = _established_at(port, clients)
        for session in sessions:
            session.leave()
        for _ in range(40):  # well under the leave timeout: the router's answer closes them
            await asyncio.sleep(0.1)
            if not _established_at(port, clients):
                break
        return joined, _established_at(port, clients)

    joined, left_open = asyncio.run(join_and_leave())
    assert joined == 20
    assert left_open == 0, f"{left_open} of 20 connections still open at the router after leaving"
