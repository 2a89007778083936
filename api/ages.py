"""Delivery latency where the user sits: browsers report how old each event was on arrival.

``GET /time`` gives the API's clock, the one that stamps each event's ``ts`` at commit, so
a page learns its offset from it (sandbar.js ``EventAges``) and computes commit → browser
for every live event. ``POST /event-ages`` takes a batch of those ages; each becomes one
observation of ``sandbar_browser_event_age_seconds`` under the topic's declared pattern
(the TopicRouter's, never the concrete URI: a bounded label set). The histogram is a
worker's multiprocess metric, so the master's ``/metrics`` sums every worker's.

Reports come from anyone who can reach the API, so each is bounded: at most
``MAX_BATCH`` ages, values clamped to ``0..MAX_AGE`` seconds (a skewed clock is not a
negative age, a sleeping laptop not an hour-old delivery), and a token bucket per
reporting session (its WAMP session id, from this address) in each worker. A malformed
report is refused whole with a 400 naming the problem, and counted.
"""

from __future__ import annotations

import math
import time
from functools import cache
from typing import Any

from flask import Blueprint, current_app, request
from prometheus_client import CollectorRegistry, Counter, Histogram

from api.errors import ApiError, invalid, json_object
from sandbar.metrics import AGE_BUCKETS
from topics.gate import RateLimiter
from topics.registry import TopicRouter
from topics.service import load_router

bp = Blueprint("ages", __name__)

P = "sandbar_browser_"
#: ages in one report; a page sends its batch every few seconds
MAX_BATCH = 200
#: seconds; the top of the histogram's buckets
MAX_AGE = float(AGE_BUCKETS[-1])
MAX_TOPIC = 255
#: reports a second per session, and the burst allowed
RATE, BURST = 1.0, 5
#: sessions whose buckets a worker keeps; past it they start again full
MAX_SESSIONS = 10_000
#: the topic label of a URI no declared topic matches
NO_TOPIC = "(none)"
EXAMPLE = '{"session": 123, "ages": [{"topic": "articles", "age": 0.042}]}'


class AgeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.age = Histogram(
            P + "event_age_seconds",
            "Event commit (its ts) to its arrival in a browser, as the page measured it "
            "(clock offset from GET /time), by topic pattern",
            ["topic"],
            buckets=AGE_BUCKETS,
            registry=registry,
        )
        self.reports = Counter(
            P + "event_age_reports",
            "POST /event-ages reports by result (accepted, malformed, rate_limited)",
            ["result"],
            registry=registry,
        )
        self.clamped = Counter(
            P + "event_ages_clamped",
            f"Reported ages outside 0..{MAX_AGE:g} s, clamped into it",
            registry=registry,
        )


@cache
def _router(topics_app: str) -> TopicRouter:
    return load_router(topics_app)


def pattern_of(uri: str) -> str:
    found = _router(current_app.config["SANDBAR"].topics_app).match(uri)
    return found[0].pattern.source if found else NO_TOPIC


def _limiter() -> RateLimiter:
    extensions = current_app.extensions
    limiter = extensions.get("sandbar_age_limiter")
    if limiter is None or len(limiter._buckets) > MAX_SESSIONS:
        limiter = extensions["sandbar_age_limiter"] = RateLimiter(RATE, BURST)
    return limiter


def _age(item: Any, index: int) -> tuple[str, float]:
    where = f"ages[{index}]"
    if not isinstance(item, dict):
        raise invalid(where, 'must be an object like {"topic": "articles", "age": 0.042}')
    topic, age = item.get("topic"), item.get("age")
    if not isinstance(topic, str) or not 0 < len(topic) <= MAX_TOPIC:
        raise invalid(f"{where}.topic", f"must be the event's topic URI, 1-{MAX_TOPIC} characters")
    if isinstance(age, bool) or not isinstance(age, int | float) or not math.isfinite(age):
        raise invalid(f"{where}.age", "must be a number of seconds (commit to arrival)")
    return topic, float(age)


def _report() -> tuple[int, list[tuple[str, float]]]:
    data = json_object(EXAMPLE)
    session = data.get("session")
    if isinstance(session, bool) or not isinstance(session, int) or not 0 < session <= 2**53:
        raise invalid("session", "must be the page's WAMP session id (an integer from 1)")
    ages = data.get("ages")
    if not isinstance(ages, list):
        raise invalid("ages", f"must be a list of ages, e.g. {EXAMPLE}")
    if len(ages) > MAX_BATCH:
        raise invalid("ages", f"at most {MAX_BATCH} per report: send them more often")
    return session, [_age(item, index) for index, item in enumerate(ages)]


@bp.get("/time")
def server_time() -> dict[str, Any]:
    """The clock that stamps events' ``ts`` (Unix milliseconds)."""
    return {"now": time.time_ns() // 1_000_000}


@bp.post("/event-ages")
def event_ages() -> tuple[dict[str, Any], int]:
    metrics: AgeMetrics = current_app.extensions["sandbar_metrics"].browser
    try:
        session, ages = _report()
    except ApiError:
        metrics.reports.labels("malformed").inc()
        raise
    if not _limiter().allow(hash((request.remote_addr, session))):
        metrics.reports.labels("rate_limited").inc()
        raise ApiError(
            429,
            "rate_limited",
            f"at most {RATE:g} report a second per session (bursts of {BURST}): "
            "batch the ages and send less often",
            headers={"Retry-After": "1"},
        )
    clamped = 0
    for topic, age in ages:
        kept = min(max(age, 0.0), MAX_AGE)
        clamped += kept != age
        metrics.age.labels(pattern_of(topic)).observe(kept)
    if clamped:
        metrics.clamped.inc(clamped)
    metrics.reports.labels("accepted").inc()
    return {"accepted": len(ages), "clamped": clamped}, 202
