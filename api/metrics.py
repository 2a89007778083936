"""The API's Prometheus metrics, across gunicorn's workers (prometheus_client multiprocess mode).

Each worker writes its counts to memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR``; the
gunicorn master serves ``/metrics`` on its own port, summing every worker's files with a
fresh :class:`MultiProcessCollector` per scrape. The master, not a worker: it outlives its
workers, answers while they are all busy, and keeps scrapes off the public API port. The
master empties the directory before the first fork (stale files of an earlier run would
count again) and marks each dead worker (``child_exit``) so its gauges are dropped while
its counts stay in the sums: a SIGKILLed and replaced worker moves no counter backwards.

The outbox backlog gauges are read from the database at scrape time (the partial index on
unacknowledged rows), so they are right even with every worker dead.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from api.ages import AgeMetrics
from api.ages import P as BROWSER
from api.db import make_engine, outbox, unacknowledged
from sandbar.metrics import LATENCY_BUCKETS, MetricsSettings
from sandbar.paths import private_dir

log = logging.getLogger("sandbar.api.metrics")

P = "sandbar_api_"
DIR_VAR = "PROMETHEUS_MULTIPROC_DIR"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: the route label of a request no URL rule matched (404, 405): never the raw path
UNMATCHED = "(unmatched)"

_BACKLOG = select(func.count(), func.min(outbox.c.ts)).where(unacknowledged)


class ApiMetrics:
    """One per worker process (one app), created after the fork."""

    def __init__(self) -> None:
        r = CollectorRegistry()  # read in-process (tests); multiprocess mode reads the files
        self.requests = Counter(
            P + "requests",
            "HTTP requests by method, route and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            P + "request_seconds",
            "Time to answer one request, by method and route",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        events = ["event"]
        self.committed = Counter(
            P + "events_committed", "Events committed to the outbox", events, registry=r
        )
        self.sent = Counter(
            P + "events_sent", "Committed events sent to the bridge at once", events, registry=r
        )
        self.acknowledged = Counter(
            P + "events_acknowledged",
            "Outbox rows marked delivered on the bridge's acknowledgement",
            events,
            registry=r,
        )
        self.resent = Counter(
            P + "events_resent", "Unacknowledged events sent again by a relay", events, registry=r
        )
        self.refused = Counter(
            P + "events_refused", "Events the bridge refused for good", events, registry=r
        )
        self.schema_refused = Counter(
            P + "events_schema_refused",
            "Events refused before commit: their payload did not fit the event's schema",
            events,
            registry=r,
        )
        self.catch_up_requests = Counter(
            P + "catch_up_requests", "GET /events by status", ["status"], registry=r
        )
        self.catch_up_events = Counter(
            P + "catch_up_events", "Events served by GET /events", registry=r
        )
        self.browser = AgeMetrics(r)  # what pages report (api/ages.py)
        self.registry = r
        self._children: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}

    def instrument(self, app: Flask) -> None:
        """Count and time every request by its URL rule (bounded), not its path."""
        app.before_request(_started)
        app.after_request(self._answered)

    def _answered(self, response: Response) -> Response:
        rule = request.url_rule
        key = (
            request.method if request.method in METHODS else "other",
            rule.rule if rule is not None else UNMATCHED,
            response.status_code,
        )
        children = self._children.get(key) or self._children_of(*key)
        children[0].inc()
        started = g.get("sandbar_started")
        if started is not None:
            children[1].observe(time.perf_counter() - started)
        if children[2] is not None:
            children[2].inc()
        return response

    def _children_of(self, method: str, route: str, status: int) -> tuple[Any, Any, Any]:
        """The labelled series of one kind of request, looked up once: ``labels()`` per
        request is most of the hot path's cost. Bounded: rules x methods x statuses."""
        code = str(status)
        catch_up = self.catch_up_requests.labels(code) if route == "/events" else None
        children = (
            self.requests.labels(method, route, code),
            self.request_seconds.labels(method, route),
            catch_up,
        )
        self._children[(method, route, status)] = children
        return children


def _started() -> None:
    g.sandbar_started = time.perf_counter()


def count_names(counter: Counter, names: Iterable[str]) -> None:
    for name in names:
        counter.labels(name).inc()


# -- the master's side ------------------------------------------------------------


def enable_multiprocess(directory: Path) -> None:
    """In the master, before any worker forks: empty ``directory`` of the files of earlier
    runs and write every metric made from now on there. Only ``*.db`` files are removed:
    the directory may be one an operator named."""
    private_dir(directory)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ[DIR_VAR] = str(directory)
    # prometheus_client chooses its value class when first imported, which the master's
    # imports did before this ran: choose again (what it does when the variable is set)
    values.ValueClass = values.MultiProcessValue()


class BacklogCollector(Collector):
    """Unacknowledged outbox rows and the oldest one's age, read at each scrape."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        try:
            with self.engine.connect() as conn:
                count, oldest = conn.execute(_BACKLOG).one()
        finally:
            self.engine.dispose()  # the master forks workers: hold no connection between scrapes
        age = max(time.time() - oldest / 1000, 0.0) if oldest is not None else 0.0
        yield GaugeMetricFamily(
            P + "outbox_backlog", "Outbox rows neither acknowledged nor refused", value=count
        )
        yield GaugeMetricFamily(
            P + "outbox_oldest_age_seconds",
            "Age of the oldest unacknowledged outbox row (0 when there is none)",
            value=age,
        )


class ApiFamilies(Collector):
    """The workers' ``sandbar_api_*`` (and ``sandbar_browser_*``) families only. Other code in the workers makes metrics
    too (GET /events asks the topics authorizer in-process): under their services' names
    they would be summed with those services' own counts."""

    def __init__(self, directory: str) -> None:
        self.files = MultiProcessCollector(None, directory)

    def collect(self) -> Iterator[Metric]:
        return (family for family in self.files.collect() if family.name.startswith((P, BROWSER)))


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per scrape would drown gunicorn's log


def metrics_app(engine: Engine) -> Any:
    """A WSGI app: a fresh registry and collector per scrape (what prometheus_client asks
    for: one registry kept across scrapes duplicates series), plus the backlog."""
    backlog = BacklogCollector(engine)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"see /metrics\n"]
        registry = CollectorRegistry()
        registry.register(ApiFamilies(os.environ[DIR_VAR]))
        try:
            registry.register(backlog)
            body = generate_latest(registry)
        except Exception as exc:  # the database is away: still serve the counts
            log.warning("outbox backlog not read (%s)", exc)
            registry.unregister(backlog)
            body = generate_latest(registry)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [body]

    return app


def serve_from_master(settings: MetricsSettings, database_url: str) -> WSGIServer | None:
    """Serve ``/metrics`` from a daemon thread of the gunicorn master. A port that cannot
    be had is logged and the API runs on without metrics."""
    engine = make_engine(database_url)
    try:
        server = make_server(
            settings.host, settings.port, metrics_app(engine), handler_class=_Quiet
        )
    except OSError as exc:
        log.error(
            "api: cannot serve metrics on %s:%d (%s); running without them: choose a free "
            "port with --metrics-port or SANDBAR_API_METRICS_PORT",
            settings.host,
            settings.port,
            exc,
        )
        return None
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics on %s", settings.url)
    return server


def worker_exited(server: Any, worker: Any) -> None:
    """gunicorn ``child_exit``: the dead worker's live gauges go; its counts stay summed."""
    mark_process_dead(worker.pid)
