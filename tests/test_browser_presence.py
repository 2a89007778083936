"""Presence lists in real Chromium, three browser contexts: alice (two tabs), bob, carol.

Each tab runs sandbar.js's presence() on ``lobby.<room>`` (declared with
``presence=("user",)`` in tests/topics_app.py), signed in with its own token.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.support.procs import Api, Bridge, Router, Topics, free_port
from tests.support.proxied import WITH_PROXIES_STACK, proxies_of
from tests.test_browser import _fast_bridge_config, pages, start_api, wait_open

__all__ = ["pages"]  # a fixture, imported for this module's tests

PROBE = """
async ({ token, user, room }) => {
  const m = await import("/sandbar.js");
  const probe = { here: null, entries: null, changes: 0, error: null };
  window.probe = probe;
  m.connect({
    authmethods: ["ticket"], authid: user, onchallenge: () => token,
    onOpen: async (session) => {
      try {
        await m.presence(session, room, (list) => {
          probe.here = list.map((e) => e.authid).sort().join(",");
          probe.entries = list;
          probe.changes += 1;
        });
      } catch (err) {
        probe.error = `${err.error}: ${err.reason}`;
      }
    },
  });
}
"""


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[Router, Api]]:
    workdir: Path = tmp_path_factory.mktemp("presence")
    api_port = free_port()
    with contextlib.ExitStack() as started:
        router = Router(workdir, proxies=proxies_of(request)).start()
        started.callback(router.stop)
        topics = Topics(workdir, router, api_url=f"http://127.0.0.1:{api_port}").start()
        started.callback(topics.stop)
        bridge: Bridge = Bridge(workdir, router, _fast_bridge_config()).start()
        started.callback(bridge.stop)
        api = start_api(workdir, bridge, router, port=api_port)
        started.callback(api.stop)
        for user in ("alice", "bob", "carol", "mallory"):
            api.add_user(user)
        yield router, api


def probe(page: Page, api: Api, user: str, room: str) -> Page:
    wait_open(page)
    page.evaluate(PROBE, {"token": api.sign_in(user), "user": user, "room": room})
    return page


def shows(page: Page, who: str, timeout: float = 10) -> None:
    page.wait_for_function(f"window.probe.here === {who!r}", timeout=timeout * 1000)


@WITH_PROXIES_STACK
def test_three_contexts_list_each_user_once_and_follow_leaving(pages: Any, stack: Any):
    router, api = stack
    pages.point_at(router.port, api.url)
    room = f"lobby.r{uuid.uuid4().hex[:8]}"
    carol = probe(pages.open(), api, "carol", room)
    shows(carol, "carol")
    alice1 = probe(pages.open(), api, "alice", room)
    alice2 = alice1.context.new_page()  # alice's second tab, in her own context
    alice2.goto(pages.url())
    probe(alice2, api, "alice", room)
    bob = probe(pages.open(), api, "bob", room)
    for page in (carol, alice1, alice2, bob):
        shows(page, "alice,bob,carol")  # alice once, however many tabs
    entries = carol.evaluate("window.probe.entries")
    assert sorted(entries, key=lambda e: e["authid"]) == [
        {"authid": user, "extra": {"user": user}} for user in ("alice", "bob", "carol")
    ]  # the declared key only: no session_proof, no expires_at

    bob.context.close()  # bob goes: everyone sees it
    for page in (carol, alice1, alice2):
        shows(page, "alice,carol")
    changes = carol.evaluate("window.probe.changes")
    alice2.close()  # alice closes one tab: she is still here
    shows(alice1, "alice,carol")
    alice1.wait_for_timeout(1000)  # a leave for alice would have arrived by now
    assert carol.evaluate("window.probe.here") == "alice,carol"
    assert carol.evaluate("window.probe.changes") == changes
    alice1.context.close()  # her last tab
    shows(carol, "carol")


def test_who_may_not_subscribe_may_not_see_who_is_there(pages: Any, stack: Any):
    router, api = stack
    pages.point_at(router.port, api.url)
    page = probe(pages.open(), api, "mallory", "lobby.closed-x")
    page.wait_for_function("window.probe.error !== null", timeout=10_000)
    assert page.evaluate("window.probe.error") == "wamp.error.not_authorized: this lobby is closed"
