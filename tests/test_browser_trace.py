"""web/sandbar.js in real Chromium: the subscriber's callback gets the event's trace
(``meta.trace``), live from the router and recovered from GET /events alike."""

from __future__ import annotations

from typing import Any

import requests
from playwright.sync_api import Page

from tests.test_browser import pages, wait_open
from tests.test_browser_recovery import inject_unsent_event, post, stack

__all__ = ["pages", "stack"]  # fixtures, imported for this module's tests

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

PROBE = """
async ({ apiUrl }) => {
  const m = await import("/sandbar.js");
  const probe = { got: [], subscribed: 0 };
  const recovery = new m.Recovery({ apiUrl });
  m.connect({
    authmethods: ["anonymous"],
    onOpen: async (session) => {
      await m.subscribe(session, "articles", (article, meta) => probe.got.push({
        id: article.id, trace: meta.trace, recovered: meta.recovered,
      }), { recover: recovery });
      probe.subscribed += 1;
    },
  });
  window.probe = probe;
}
"""


def _open(pages: Any, stack: Any) -> Page:
    router, _, api = stack
    pages.point_at(router.port, api.url)
    page: Page = pages.open(channel="general")
    wait_open(page)
    page.evaluate(PROBE, {"apiUrl": api.url})
    page.wait_for_function("window.probe && window.probe.subscribed >= 1", timeout=10_000)
    return page


def test_the_page_callback_gets_meta_trace_live_and_recovered(pages, stack):
    _, _, api = stack
    page = _open(pages, stack)
    live = post(api, "traced", headers={**api.auth, "traceparent": TRACEPARENT})
    page.wait_for_function("window.probe.got.length >= 1", timeout=10_000)
    lost = inject_unsent_event(api, "recovered with its trace")  # a gap: fetched from the outbox
    after = post(api, "after the gap")
    page.wait_for_function("window.probe.got.length >= 3", timeout=15_000)
    got = {event["id"]: event for event in page.evaluate("window.probe.got")}

    assert got[live] == {"id": live, "trace": TRACEPARENT, "recovered": False}
    rows = requests.get(f"{api.url}/events?topic=articles&after=0", timeout=5).json()["events"]
    [row] = [r for r in rows if r["payload"]["id"] == lost]
    assert got[lost]["recovered"] is True
    assert got[lost]["trace"] == row["trace"], "a recovered event keeps the trace its row has"
    assert got[after]["trace"] and got[after]["trace"] != TRACEPARENT
