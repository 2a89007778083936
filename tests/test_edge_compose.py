"""docker-compose.edge.yml, really run: the router service as the core and two edge nodes of
proxy workers (edge-a, edge-b), each its own container on its own published port, their
node keys made by the one-shot edge-keys service and trusted by the core. Signed-in
subscribers on each edge and a Chromium demo page (AutobahnJS, both edges' URLs) receive an
article POSTed to the API; after ``docker kill`` of
edge A, its subscriber (given both edges' URLs) is back on edge B within seconds and has
every article exactly once (catch-up over GET /events); the core's session list shows the
signed-in user's identity, not the edges'."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from sandbar.session_proof import verify
from tests.support.browser import Pages, launch
from tests.support.catchup import CatchUpSubscriber
from tests.support.compose import Stack, compose_v2, run
from tests.support.procs import ROOT, SECRET, free_port, wait_until
from tests.test_compose import base, post_article, sign_in  # noqa: F401  (the image, built once)

pytestmark = pytest.mark.timeout(1500)

EDGES = ("edge-a", "edge-b")
#: the core's sessions, as its meta API reports them, from a backend session in its container
SESSIONS = """
import asyncio, json, os
from sandbar.probe import call_backend
from sandbar.wamp import RouterConnection
async def main():
    core = RouterConnection(url="rs://127.0.0.1:8081", authid="topics",
                            ticket=os.environ["SANDBAR_BACKEND_SECRET"])
    found = []
    for session_id in await call_backend(core, "wamp.session.list"):
        try:
            found.append(await call_backend(core, "wamp.session.get", session_id))
        except Exception:
            pass  # left meanwhile (healthchecks come and go)
    print(json.dumps(found))
asyncio.run(main())
"""


class Signed(CatchUpSubscriber):
    """Keeps each WELCOME's details: the session proof for toOthers is in its authextra."""

    welcomes: list[Any]

    async def _on_join(self, session: Any, details: Any) -> None:
        self.welcomes = [*getattr(self, "welcomes", []), details]
        await super()._on_join(session, details)


def _assert_proofs_hold(subscriber: Signed) -> None:
    """The core re-signs a proxied session's proof for its final id, with the backend
    secret only the core holds (the edges have none): the bridge would accept it."""
    for details in subscriber.welcomes:
        proof = details.authextra["session_proof"]
        assert verify(SECRET, details.session, details.authid, proof), details


class EdgeStack(Stack):
    """The stack with docker-compose.edge.yml on top, each edge on a free port."""

    def __init__(self, base: str) -> None:  # noqa: F811
        files = [
            "-f",
            str(ROOT / "docker-compose.yml"),
            "-f",
            str(ROOT / "docker-compose.edge.yml"),
        ]
        super().__init__([*compose_v2(), *files], base)
        self.edge_ports = {edge: free_port() for edge in EDGES}

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            "SANDBAR_EDGE_A_PORT": str(self.edge_ports["edge-a"]),
            "SANDBAR_EDGE_B_PORT": str(self.edge_ports["edge-b"]),
            "SANDBAR_EDGE_PROXIES": "1",  # two edges of one proxy each on this 2-core machine
            # the demo page, served by edge A, reads GET /articles and GET /events
            "SANDBAR_API_CORS_ORIGINS": ",".join(
                f"http://127.0.0.1:{port}" for port in self.edge_ports.values()
            ),
        }

    def edge_url(self, edge: str) -> str:
        return f"ws://127.0.0.1:{self.edge_ports[edge]}/ws"

    def core_sessions(self) -> list[dict[str, Any]]:
        out = self("exec", "-T", "router", "python3", "-c", SESSIONS, timeout=60)
        return list(json.loads(out.strip().splitlines()[-1]))


@pytest.fixture
def edges(base: str) -> Iterator[EdgeStack]:  # noqa: F811
    stack = EdgeStack(base)
    try:
        stack("up", "--detach", "--no-build", "--wait", "--wait-timeout", "300", timeout=330)
        print(stack("ps", "--all", timeout=30))
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.down()


def _wait_delivered(subscriber: CatchUpSubscriber, count: int) -> None:
    wait_until(lambda: len(subscriber.delivered) >= count, 30, f"{count} articles delivered")


def _token(auth: dict[str, str]) -> str:
    return auth["Authorization"].removeprefix("Bearer ")


def test_edges_deliver_and_a_killed_edges_clients_move_to_the_other(edges: EdgeStack) -> None:
    containers = edges.containers()
    assert containers["edge-keys"]["State"]["ExitCode"] == 0
    published = containers["router"]["NetworkSettings"]["Ports"] or {}
    assert not any(published.values()), f"the core publishes nothing: {published}"
    auth = sign_in(edges)
    token = _token(auth)
    a, b = (edges.edge_url(edge) for edge in EDGES)
    on_a = Signed([a, b], "articles", edges.api_url, ticket=token).start(timeout=30)
    on_b = Signed([b, a], "articles", edges.api_url, ticket=token).start(timeout=30)
    try:
        with launch() as browser:
            pages = Pages(browser).point_at(edges.edge_ports["edge-a"], edges.api_url)
            try:
                _run(edges, auth, on_a, on_b, pages)
            except BaseException:
                print("\n".join(pages.console[-40:]))
                raise
            finally:
                pages.close()
    finally:
        on_a.close()
        on_b.close()


def _run(edges: EdgeStack, auth: dict[str, str], on_a: Signed, on_b: Signed, pages: Pages) -> None:
    a, b = (edges.edge_url(edge) for edge in EDGES)
    page = pages.open(ws=f"{a},{b}")  # AutobahnJS, the demo page served by edge A
    expect(page.locator("#feed-status")).to_have_attribute("data-kind", "live", timeout=30_000)
    first = post_article(edges, "through the core", auth)
    for subscriber in (on_a, on_b):
        [event] = subscriber.wait_for(1, timeout=20)
        assert event.args == (first,)

    users = [s for s in edges.core_sessions() if s["authrole"] == "user"]
    assert [(s["authid"], s["authmethod"]) for s in users] == [
        ("tester", "cryptosign-proxy"),
        ("tester", "cryptosign-proxy"),
    ], "the browsers' own identity at the core, joined through the edges"

    edge_a = edges.containers()["edge-a"]["Id"]
    run(["docker", "kill", edge_a], timeout=60)
    killed = time.monotonic()
    posted = [post_article(edges, f"after the kill #{n}", auth) for n in range(5)]
    on_a.wait_subscribed(timeout=20, joins=2)
    moved = time.monotonic() - killed
    print(f"edge A's subscriber back on edge B after {moved:.1f}s")
    assert moved < 15, f"took {moved:.1f}s to reconnect to edge B"
    total = 1 + len(posted)
    for subscriber in (on_a, on_b):
        _wait_delivered(subscriber, total)
        assert subscriber.delivered == list(range(1, total + 1)), "nothing lost or doubled"
        assert len(subscriber.raw) == len(set(subscriber.raw)), "no event twice off the wire"
    assert on_b.joins == 1, "edge B's subscriber never noticed"
    for subscriber in (on_a, on_b):
        _assert_proofs_hold(subscriber)
    assert len(on_a.welcomes) == 2
    assert on_a.fetched + len(on_a.raw) >= total
    assert edges.containers()["edge-a"]["State"]["Status"] == "exited"
    users = [s for s in edges.core_sessions() if s["authrole"] == "user"]
    assert [s["authid"] for s in users] == ["tester", "tester"], "both on edge B now"
    for article in [first, *posted]:  # the page moved to edge B and caught up, once each
        item = page.locator(f'#feed-list li[data-id="{article["id"]}"]')
        expect(item).to_have_count(1, timeout=30_000)
    expect(page.locator("body")).to_have_attribute("data-connection", "open")
    expect(page.locator("#connection-detail")).to_contain_text("session")
