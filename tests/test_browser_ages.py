"""Delivery latency where the user sits: the demo page in real Chromium measures each live
event's age (commit → arrival, on the API's clock) and reports it; the API's two gunicorn
workers sum the reports into sandbar_browser_event_age_seconds."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.support.browser import Pages
from tests.support.procs import Api, Bridge, Router, free_port, wait_until
from tests.test_browser import article, post_article, wait_open
from tests.test_metrics import scrape, value

AGE = "sandbar_browser_event_age_seconds"
EVENTS = 5


@pytest.fixture
def pages(chromium: Browser) -> Iterator[Pages]:
    made = Pages(chromium)
    yield made
    print("browser console:", *made.console[-40:], sep="\n  ")
    made.close()


@pytest.fixture
def metered_api(router: Router, bridge: Bridge, tmp_path: Path, api_port: int) -> Iterator[Api]:
    api = Api(tmp_path, bridge.endpoint, workers=2, port=api_port, metrics_port=str(free_port()))
    api.proc.env["SANDBAR_API_CORS_ORIGINS"] = f"http://127.0.0.1:{router.port}"
    with api.start():
        yield api


def test_the_page_shows_each_events_age_and_its_reports_reach_the_histogram(
    pages, router, metered_api
):
    api = metered_api
    url = f"http://127.0.0.1:{api.proc.env['SANDBAR_API_METRICS_PORT']}/metrics"
    earlier = post_article(api, "Before the page: loaded by GET, no age")
    page = pages.point_at(router.port, api.url).open()
    wait_open(page)
    expect(page.locator("#feed-status")).to_have_attribute("data-kind", "live")
    expect(article(page, earlier["id"])).to_be_visible()
    before = value(scrape(url), f"{AGE}_count", topic="articles")

    created = [post_article(api, f"Aged {n}") for n in range(EVENTS)]
    for each in created:
        expect(article(page, each["id"]).locator(".badge-age")).to_have_text(re.compile(r"\d+ ms"))
    assert article(page, earlier["id"]).locator(".badge-age").count() == 0
    line = page.locator("#feed-ages")
    expect(line).to_have_attribute("data-count", str(EVENTS))
    expect(line).to_contain_text(re.compile(r"p50 \d+ ms · p99 \d+ ms"))
    ages = [
        float(article(page, each["id"]).locator(".badge-age").get_attribute("data-age") or "nan")
        for each in created
    ]
    assert all(-0.5 < age < 5 for age in ages), ages  # a loopback stack: well under a second

    # the page's batch (every 5 s) reaches the histogram, summed over both workers
    wait_until(
        lambda: value(scrape(url), f"{AGE}_count", topic="articles") >= before + EVENTS,
        15,
        "the page's report counted",
    )
    samples = scrape(url)
    assert value(samples, f"{AGE}_count", topic="articles") == before + EVENTS
    assert value(samples, f"{AGE}_sum", topic="articles") == pytest.approx(
        sum(max(age, 0.0) for age in ages), abs=1e-6
    )
    assert value(samples, "sandbar_browser_event_age_reports_total", result="accepted") >= 1
    assert value(samples, "sandbar_browser_event_age_reports_total", result="malformed") == 0
    print(f"\nbrowser-measured event ages (s): {ages}")
