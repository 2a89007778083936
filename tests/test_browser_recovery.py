"""web/sandbar.js in real Chromium: recovery of missed events and toOthers.

One stack (router, topics, bridge, API) for the module, the bridge giving up on a gap
after 0.5 s. Each page runs a probe: sandbar.js's connect() and subscribe() with a
Recovery, logging every event the handler gets (article id, seq, recovered, sequenced).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect
from sqlalchemy import delete

from api.backends import begin_write
from api.db import make_engine, outbox, outbox_epoch
from api.outbox import record
from bridge.config import load_routes
from tests.support.procs import SHIPPED_BRIDGE_CONFIG, Api, Bridge, Router, Topics, free_port
from tests.support.procs import wait_until as wait_for
from tests.support.proxied import WITH_PROXIES_STACK, proxies_of
from tests.test_browser import _fast_bridge_config, pages, start_api, wait_open

__all__ = ["pages"]  # a fixture, imported for this module's tests

PROBE = """
async ({ apiUrl, token, user, limit }) => {
  const m = await import("/sandbar.js");
  const probe = { got: [], reloads: [], states: [], session: null, subscribed: 0, m };
  const auth = token ? { Authorization: `Bearer ${token}` } : {};
  probe.auth = auth;
  probe.recovery = new m.Recovery({
    apiUrl, limit, headers: () => auth, onReload: ({ reason }) => probe.reloads.push(reason),
  });
  const login = token
    ? { authmethods: ["ticket"], authid: user, onchallenge: () => token }
    : { authmethods: ["anonymous"] };
  probe.connection = m.connect({
    ...login,
    onState: ({ state }) => probe.states.push(state),
    onOpen: async (session) => {
      probe.session = session;
      await m.subscribe(session, "articles", (article, meta) => probe.got.push({
        id: article.id, seq: meta.seq, recovered: meta.recovered, sequenced: meta.sequenced,
      }), { recover: probe.recovery });
      probe.subscribed += 1;
    },
  });
  window.probe = probe;
}
"""


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[Router, Bridge, Api]]:
    workdir: Path = tmp_path_factory.mktemp("recovery")
    config = _fast_bridge_config()
    config.setdefault("publish", {})["gap_timeout"] = 0.5
    api_port = free_port()
    with contextlib.ExitStack() as started:
        router = Router(workdir, proxies=proxies_of(request)).start()
        started.callback(router.stop)
        topics = Topics(workdir, router, api_url=f"http://127.0.0.1:{api_port}").start()
        started.callback(topics.stop)
        bridge = Bridge(workdir, router, config).start()
        started.callback(bridge.stop)
        api = start_api(workdir, bridge, router, port=api_port)
        started.callback(api.stop)
        yield router, bridge, api


def open_probe(pages: Any, stack: Any, user: str | None = None, limit: int = 500) -> Page:
    router, _, api = stack
    pages.point_at(router.port, api.url)
    page: Page = pages.open(channel="general")
    wait_open(page)
    token = api.sign_in(user) if user else None
    page.evaluate(PROBE, {"apiUrl": api.url, "token": token, "user": user, "limit": limit})
    page.wait_for_function("window.probe && window.probe.subscribed >= 1", timeout=10_000)
    return page


def got(page: Page) -> list[dict[str, Any]]:
    return list(page.evaluate("window.probe.got"))


def counts(page: Page) -> dict[str, int]:
    return dict(page.evaluate("window.probe.recovery.counts().articles || {}"))


def post(api: Api, title: str, headers: dict[str, str] | None = None) -> int:
    response = requests.post(
        f"{api.url}/articles",
        json={"title": title, "body": "recovery test"},
        headers=headers or api.auth,
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def wait_got(page: Page, count: int, timeout: float = 15) -> list[dict[str, Any]]:
    page.wait_for_function(f"window.probe.got.length >= {count}", timeout=timeout * 1000)
    time.sleep(0.3)  # anything extra (a duplicate) would arrive by now
    return got(page)


def assert_once_in_order(events: list[dict[str, Any]], ids: list[int]) -> None:
    assert [e["id"] for e in events] == ids
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs)), f"not once each, in order: {seqs}"


def test_a_page_offline_for_100_events_gets_each_once_in_order(pages, stack):
    _, _, api = stack
    page = open_probe(pages, stack, limit=30)  # pages of 30: the catch-up pages 4 times
    first = post(api, "before going offline")
    wait_got(page, 1)
    context = page.context
    context.set_offline(True)  # no reconnect can succeed ...
    page.evaluate("window.probe.connection._transport.close()")  # ... and the socket drops
    page.wait_for_function("window.probe.states.at(-1) === 'reconnecting'", timeout=5000)

    missed = [post(api, f"while offline {n}") for n in range(100)]
    time.sleep(1.0)  # published to the router, which has no subscription of this page
    assert page.evaluate("window.probe.states.at(-1)") == "reconnecting"
    assert len(got(page)) == 1
    context.set_offline(False)
    page.wait_for_function("window.probe.subscribed >= 2", timeout=20_000)
    events = wait_got(page, 101)
    after = post(api, "after coming back")
    events = wait_got(page, 102)

    assert_once_in_order(events, [first, *missed, after])
    assert [e["recovered"] for e in events] == [False] + [True] * 100 + [False]
    assert all(e["sequenced"] for e in events)
    numbers = counts(page)
    assert numbers["recovered"] == 100 and numbers["live"] == 2, numbers
    assert numbers["fetches"] >= 1 and numbers["reloads"] == 0, numbers
    print(f"\noffline for 100 events: counts {numbers}")


def inject_unsent_event(api: Api, title: str) -> int:
    """Commit an article event to the outbox as a crashed sender would leave it: written,
    never sent, its lease an hour away (so no relay resends it during the test)."""
    engine = make_engine(f"sqlite:///{api.database}")
    routes = load_routes(str(SHIPPED_BRIDGE_CONFIG))
    article = {
        "id": 10**6,
        "title": title,
        "body": "never sent",
        "created_at": "2026-01-01T00:00:00Z",
    }
    try:
        with begin_write(engine) as conn:
            record(conn, routes, "article.created", article, 3600, outbox_epoch(engine))
    finally:
        engine.dispose()
    return 10**6


def test_a_gap_while_connected_is_filled_from_the_outbox(pages, stack):
    _, bridge, api = stack
    page = open_probe(pages, stack)
    before = post(api, "before the gap")
    wait_got(page, 1)
    skipped_before = bridge.stats()["seq_gaps_skipped"]
    lost = inject_unsent_event(api, "never reached the bridge")
    after = post(api, "after the gap")  # the bridge holds it 0.5 s, then gives up the gap
    events = wait_got(page, 3)

    assert_once_in_order(events, [before, lost, after])
    assert [e["recovered"] for e in events] == [False, True, False]
    assert bridge.stats()["seq_gaps_skipped"] == skipped_before + 1
    numbers = counts(page)
    assert numbers["gaps"] == 1 and numbers["recovered"] == 1 and numbers["live"] == 2, numbers
    print(f"\ngap while connected: counts {numbers}")


def to_others(page: Page) -> dict[str, str]:
    return dict(page.evaluate("window.probe.m.toOthers(window.probe.session)"))


def post_from(page: Page, api: Api, title: str, others: bool = True) -> int:
    """POST /articles from the page (cross-origin, as the demo does), with toOthers."""
    script = """async ({ url, title, others }) => {
      const p = window.probe;
      const headers = { "Content-Type": "application/json", ...p.auth,
                        ...(others ? p.m.toOthers(p.session) : {}) };
      const response = await fetch(`${url}/articles`, {
        method: "POST", headers, body: JSON.stringify({ title, body: "from the page" }),
      });
      return [response.status, await response.json()];
    }"""
    status, body = page.evaluate(script, {"url": api.url, "title": title, "others": others})
    assert status == 201, body
    return int(body["id"])


@WITH_PROXIES_STACK
def test_to_others_skips_the_sending_tab_but_not_its_second_tab(pages, stack):
    _, bridge, api = stack
    api.add_user("twotabs")
    sender = open_probe(pages, stack, user="twotabs")
    second = open_probe(pages, stack, user="twotabs")
    header = to_others(sender)
    session = sender.evaluate("window.probe.session.id")
    assert header["X-Sandbar-Session"].startswith(f"{session}.")
    ignored_before = sum(bridge.stats()["others_ignored"].values())

    warm = post(api, "for both tabs")
    wait_got(sender, 1)
    wait_got(second, 1)
    mine = post_from(sender, api, "not for my own tab")
    assert [e["id"] for e in wait_got(second, 2)] == [warm, mine]
    # the sender's tab sees a gap in seq where its own event was, and asks GET /events,
    # which leaves out the echo of the session that asked for it
    theirs = post(api, "for everyone")
    wait_got(sender, 2)
    time.sleep(1.0)
    assert [e["id"] for e in got(sender)] == [warm, theirs], "the sender's own echo came back"
    assert [e["id"] for e in wait_got(second, 3)] == [warm, mine, theirs]
    numbers = counts(sender)
    assert numbers["gaps"] == 1 and numbers["fetches"] == 1 and numbers["live"] == 2, numbers
    assert numbers["recovered"] == 0, numbers
    assert sum(bridge.stats()["others_ignored"].values()) == ignored_before
    print(f"\ntoOthers: sender {numbers}, second tab {counts(second)}")


def test_a_forged_header_naming_another_users_session_is_ignored(pages, stack):
    _, bridge, api = stack
    api.add_user("victim")
    api.add_user("mallory")
    victim = open_probe(pages, stack, user="victim")
    stolen = to_others(victim)["X-Sandbar-Session"]  # even the victim's real proof
    session = stolen.split(".")[0]
    mallory = {"Authorization": f"Bearer {api.sign_in('mallory')}"}
    before = dict(bridge.stats()["others_ignored"])

    forged = [
        post(api, "with the victim's own proof", {**mallory, "X-Sandbar-Session": stolen}),
        post(
            api, "with a made-up proof", {**mallory, "X-Sandbar-Session": f"{session}.{'A' * 22}"}
        ),
        post(api, "with a malformed header", {**mallory, "X-Sandbar-Session": "nonsense"}),
    ]
    events = wait_got(victim, 3)
    assert_once_in_order(events, forged)
    assert [e["recovered"] for e in events] == [False] * 3  # delivered live, not excluded
    wait_for(
        lambda: (
            bridge.stats()["others_ignored"].get("not_the_users_session", 0)
            == before.get("not_the_users_session", 0) + 2
        ),
        5,
        "the bridge counted both forged claims",
    )
    # and GET /events does not hide them from the victim either
    response = requests.get(
        f"{api.url}/events",
        params={"topic": "articles", "after": events[0]["seq"] - 1},
        headers={"Authorization": f"Bearer {api.sign_in('victim')}", "X-Sandbar-Session": stolen},
        timeout=10,
    )
    assert [e["payload"]["id"] for e in response.json()["events"]] == forged


def test_a_pruned_catch_up_window_asks_the_page_to_reload(pages, stack):
    _, _, api = stack
    page = open_probe(pages, stack)
    seen = post(api, "seen live")
    first_seq = wait_got(page, 1)[0]["seq"]
    page.context.set_offline(True)
    page.evaluate("window.probe.connection._transport.close()")
    page.wait_for_function("window.probe.states.at(-1) === 'reconnecting'", timeout=5000)
    missed = [post(api, f"pruned {n}") for n in range(3)]
    kept = post(api, "kept")
    engine = make_engine(f"sqlite:///{api.database}")  # retention pruned what it missed
    try:
        with begin_write(engine) as conn:
            conn.execute(
                delete(outbox).where(outbox.c.topic == "articles", outbox.c.seq <= first_seq + 3)
            )
    finally:
        engine.dispose()
    page.context.set_offline(False)
    page.wait_for_function("window.probe.reloads.length >= 1", timeout=20_000)
    assert page.evaluate("window.probe.reloads") == ["truncated"]
    after = post(api, "live after the reload")
    events = wait_got(page, 2)
    assert [e["id"] for e in events] == [seen, after]  # nothing patched in: the page reloads
    assert not set(missed) & {e["id"] for e in events} and kept not in missed
    print(f"\ntruncated: counts {counts(page)}")


def sign_in_on_page(page: Page, user: str) -> None:
    page.fill("#signin-form [name=username]", user)
    page.fill("#signin-form [name=password]", "correct horse battery")
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#account-user")).to_have_text(user)
    wait_open(page)
    expect(page.locator("#feed-status")).to_have_attribute("data-kind", "live")


def test_the_demo_pages_not_to_this_tab_box(pages, stack):
    router, _, api = stack
    api.add_user("demotabs")
    pages.point_at(router.port, api.url)
    this_tab, other_tab = pages.open(channel="general"), pages.open(channel="general")
    for page in (this_tab, other_tab):
        sign_in_on_page(page, "demotabs")
    this_tab.fill("#article-form [name=title]", "Only for my other tabs")
    this_tab.fill("#article-form [name=body]", "Sent with X-Sandbar-Session.")
    this_tab.check("#article-form [name=others]")
    this_tab.click("#article-form button[type=submit]")
    expect(this_tab.locator("#article-status")).to_contain_text("not this one")
    created = int(this_tab.locator("#article-status").inner_text().split("#")[1].split(":")[0])
    expect(other_tab.locator(f'#feed-list li[data-id="{created}"]')).to_have_attribute(
        "data-live", "true"
    )
    expect(this_tab.locator("#article-form [name=others]")).to_be_checked()  # kept on
    time.sleep(1.0)
    expect(this_tab.locator(f'#feed-list li[data-id="{created}"]')).to_have_count(0)


def test_a_new_database_asks_the_page_to_reload(pages, stack):
    """Last in the module: it replaces the stack's database."""
    _, _, api = stack
    page = open_probe(pages, stack)
    old = post(api, "in the old database")
    wait_got(page, 1)
    api.stop()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{api.database}{suffix}").unlink(missing_ok=True)
    api.start()
    api.__dict__.pop("auth", None)  # the writer is gone with the database
    new = post(api, "in the new database")  # seq 1 again, another epoch
    events = wait_got(page, 2)
    assert [e["id"] for e in events] == [old, new]
    assert events[1]["seq"] == 1 and not events[1]["recovered"]
    assert page.evaluate("window.probe.reloads") == ["epoch"]
    print(f"\nnew epoch: counts {counts(page)}")
