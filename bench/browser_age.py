"""Delivery latency where the user sits: commit → browser at 200 events/s, as the page saw it.

A real headless Chromium page (Debian's, under Playwright, as the browser tests drive it)
subscribes to ``articles`` with sandbar.js ``EventAges`` (clock offset from the API's
``GET /time``); the bench POSTs /articles at a fixed rate through the real API (gunicorn,
2 workers, metrics on as ``sandbar up`` runs it), after a warm-up that is not counted. The
page's own p50/p99/max come from ``EventAges.quantile()`` over every measured event; its
batched reports reach ``sandbar_browser_event_age_seconds`` and the API's ``/metrics``
(parsed with prometheus_client's parser) must have counted exactly the events the page
measured. Prints a markdown table and the figure; writes JSON under bench/results/.

    python -m bench.browser_age [--quick] [--rate 200] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from playwright.async_api import Page, async_playwright
from prometheus_client.parser import text_string_to_metric_families

from bench.measure import answered, percentile
from bench.publishers import TOPIC, Rest
from bench.report import RESULTS
from sandbar.heap import freeze_startup_heap
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, missing_prerequisite
from tests.support.procs import Api, Bridge, Router, Topics, free_port

AGE = "sandbar_browser_event_age_seconds"
REPORTS = "sandbar_browser_event_age_reports_total"
#: the page's console and errors (the last of them go into a failure's message)
CONSOLE: list[str] = []
#: the page: subscribe with EventAges, count arrivals; a report a second (the API's limit
#: per session), up to 200 ages each (its batch limit): 200 events/s fit, none dropped
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>sandbar bench: event ages</title>
<script src="/vendor/autobahn.min.js"></script>
<script type="module">
import { EventAges, connect, subscribe } from "/sandbar.js";
const params = new URLSearchParams(location.search);
const ages = new EventAges({ apiUrl: params.get("api"), interval: 1000, maxBatch: 200, keep: 1e6 });
const bench = (window.bench = { ages, arrived: 0, state: "connecting", sync: null });
connect({
  url: params.get("ws"),
  authmethods: ["anonymous"],
  onState: ({ state }) => { if (state !== "open") bench.state = state; },
  onOpen: async (session) => {
    bench.sync = await ages.sync(5);
    await subscribe(session, params.get("topic"), () => { bench.arrived += 1; }, { ages });
    bench.state = "subscribed";
  },
});
</script></head><body>bench</body></html>
"""


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = requests.get(url, timeout=10).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def histogram(url: str) -> dict[str, float]:
    """The browser-age histogram's count and sum for the topic, and the reports by result."""
    samples = scrape(url)
    topic = frozenset({("topic", TOPIC)})
    out = {k: samples.get((f"{AGE}_{k}", topic), 0.0) for k in ("count", "sum")}
    for result in ("accepted", "rate_limited", "malformed"):
        out[result] = samples.get((REPORTS, frozenset({("result", result)})), 0.0)
    return out


async def _until(page: Page, condition: str, timeout: float, what: str) -> None:
    try:
        await page.wait_for_function(condition, timeout=timeout * 1000, polling=100)
    except Exception as exc:
        state = await page.evaluate(
            "window.bench && {a: bench.arrived, n: bench.ages.recent.length,"
            " p: bench.ages.pending.length, s: bench.ages.sent, st: bench.state}"
        )
        lines = "\n  ".join(CONSOLE[-20:])
        raise RuntimeError(f"timed out waiting for {what}: page {state}\n  {lines}") from exc


async def _settled(page: Page, arrived: int, timeout: float) -> None:
    """Every event arrived at the page and every age reported (the API took the batch)."""
    await _until(page, f"bench.arrived >= {arrived}", timeout, f"{arrived} events at the page")
    await _until(
        page,
        f"bench.ages.sent >= {arrived} && !bench.ages.pending.length && !bench.ages.sending",
        timeout,
        "the page's reports taken",
    )


async def measure(
    api: Api, router: Router, metrics_url: str, rate: float, warm: float, seconds: float
) -> dict[str, Any]:
    pub = Rest(api.port, api.auth)
    await pub.open()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = await browser.new_page()
            page.on("console", lambda msg: CONSOLE.append(f"{msg.type}: {msg.text}"))
            page.on("pageerror", lambda exc: CONSOLE.append(f"pageerror: {exc}"))
            query = f"api={api.url}&ws={router.ws_url}&topic={TOPIC}"
            # the page's origin and address space are the router's (a loopback one: the
            # browser lets it open the WebSocket), its document is ours
            await page.goto(f"http://127.0.0.1:{router.port}/sandbar.js?{query}")
            await page.set_content(PAGE)
            await _until(page, "bench.state === 'subscribed'", 20, "the page subscribed")
            sync = await page.evaluate("bench.sync")

            await answered(pub, rate, warm)  # warm-up: not counted
            warmed = int(rate * warm)
            await _settled(page, warmed, 30)
            await page.evaluate("bench.ages.recent.length = 0")
            before = histogram(metrics_url)

            began = time.monotonic()
            post_ms = await answered(pub, rate, seconds)
            sent_for = time.monotonic() - began
            count = int(rate * seconds)
            await _settled(page, warmed + count, 30)
            after = histogram(metrics_url)
            seen = await page.evaluate(
                "({ages: bench.ages.recent, p50: bench.ages.quantile(0.5),"
                " p99: bench.ages.quantile(0.99), arrived: bench.arrived})"
            )
        finally:
            await browser.close()
            await pub.close()
    ages: list[float] = seen["ages"]
    return {
        "events": count,
        "sent_for_s": round(sent_for, 2),
        "clock": sync,
        "page": {
            "count": len(ages),
            "arrived_total": seen["arrived"],
            "p50_ms": round(seen["p50"] * 1000, 1),
            "p99_ms": round(seen["p99"] * 1000, 1),
            "max_ms": round(max(ages) * 1000, 1),
            "mean_ms": round(statistics.fmean(ages) * 1000, 2),
            "sum_s": round(sum(max(a, 0.0) for a in ages), 4),
            "negative": sum(a < 0 for a in ages),
        },
        "histogram": {k: round(after[k] - before[k], 4) for k in after},
        "post_answer_ms": {
            "p50": round(percentile(post_ms, 50), 2),
            "p99": round(percentile(post_ms, 99), 2),
        },
        "console": CONSOLE[-20:],
        "raw_ages_s": ages,
    }


def run(work: Path, rate: float, warm: float, seconds: float) -> dict[str, Any]:
    problem = missing_prerequisite()
    if problem:
        raise SystemExit(problem)
    router = Router(work).start()
    topics = Topics(work, router).start()
    bridge = Bridge(work, router).start()
    metrics_port = free_port()
    (work / "api").mkdir()
    api = Api(work / "api", bridge.endpoint, metrics_port=str(metrics_port))
    api.proc.env["SANDBAR_API_CORS_ORIGINS"] = f"http://127.0.0.1:{router.port}"
    try:
        api.start()
        assert api.auth  # a signed-in writer, before anything is timed
        freeze_startup_heap()
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        return asyncio.run(measure(api, router, metrics_url, rate, warm, seconds))
    finally:
        api.stop()
        bridge.stop()
        topics.stop()
        router.stop()


def report(r: dict[str, Any], rate: float, seconds: float) -> bool:
    page, hist = r["page"], r["histogram"]
    agree = page["count"] == r["events"] == hist["count"]
    mean = hist["sum"] / hist["count"] * 1000 if hist["count"] else float("nan")
    print(
        f"\nCommit → browser at {rate:.0f} events/s for {seconds:g} s (after a warm-up not "
        "counted): POST /articles through the API (gunicorn 2 workers, SQLite, metrics on), "
        "bridge and router to one headless Chromium page (sandbar.js EventAges, clock offset "
        f"{r['clock']['offset']} ms from GET /time, round trip {r['clock']['rtt']} ms); the "
        "page's figures, and the API histogram its reports fed\n"
    )
    print("| measured by | events | p50 ms | p99 ms | max ms | mean ms |")
    print("|---|---:|---:|---:|---:|---:|")
    print(
        f"| page (EventAges.quantile) | {page['count']} | {page['p50_ms']} | {page['p99_ms']} | "
        f"{page['max_ms']} | {page['mean_ms']} |"
    )
    print(f"| API {AGE} | {hist['count']:.0f} | | | | {mean:.2f} |")
    print(
        f"\nreports: {hist['accepted']:.0f} accepted, {hist['rate_limited']:.0f} rate-limited "
        f"(sent again later), {hist['malformed']:.0f} malformed; POST answered p50 "
        f"{r['post_answer_ms']['p50']} ms, p99 {r['post_answer_ms']['p99']} ms"
    )
    verdict = "AGREE" if agree else "DISAGREE"
    print(
        f"{verdict}: {r['events']} events posted, {page['count']} measured by the page, "
        f"{hist['count']:.0f} counted by the API's histogram (sum {hist['sum']:.4f} s, page "
        f"{page['sum_s']:.4f} s)"
    )
    print(
        f"\nFigure: browser-measured event age (commit → page) at {rate:.0f} events/s: "
        f"p50 {page['p50_ms']} ms, p99 {page['p99_ms']} ms, max {page['max_ms']} ms "
        f"({page['count']} events)"
    )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "browser_age.json"
    settings = {"rate": rate, "seconds": seconds}
    out.write_text(
        json.dumps(
            {"machine": platform.platform(), "settings": settings, "agree": agree, **r}, indent=1
        )
    )
    print(f"\n(raw data: {out})")
    return agree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 3 s run after 1 s of warm-up")
    parser.add_argument("--rate", type=float, default=200.0, help="events a second")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds")
    args = parser.parse_args()
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    warm = 1.0 if args.quick else 2.0
    with tempfile.TemporaryDirectory() as tmp:
        result = run(Path(tmp), args.rate, warm, seconds)
    if not report(result, args.rate, seconds):
        raise SystemExit("the page's count and the API histogram's disagree (see above)")


if __name__ == "__main__":
    main()
