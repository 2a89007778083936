"""The bridge's Prometheus metrics.

Counts are the bridge's own stats (``Bridge.snapshot``, also served as
``sandbar.bridge.stats``), read at scrape time: one count, two views. Only the
latencies, which stats cannot hold, are kept here as histograms.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sandbar.metrics import AGE_BUCKETS, LATENCY_BUCKETS, new_registry

P = "sandbar_bridge_"

#: snapshot key → (counter name, help)
COUNTERS = {
    "received": ("events_received", "Valid events taken from ZeroMQ"),
    "published": ("events_published", "Events the router acknowledged"),
    "rejected": ("events_refused", "Events the router refused (answered, never resent)"),
    "requeued": ("events_requeued", "Unacknowledged events put back after a lost connection"),
    "intake_paused": ("intake_paused", "Times the full buffer paused reading ZeroMQ"),
    "connects": ("router_connects", "Sessions joined with the router"),
    "seq_duplicates": ("events_duplicate", "Resent events already published or pending"),
    "seq_late": ("events_late", "Sequenced events that came after their gap was given up"),
    "seq_gaps_skipped": ("seq_gaps_skipped", "Sequence numbers given up on after gap_timeout"),
}
#: snapshot key → (gauge name, help)
GAUGES = {
    "buffered": ("events_buffered", "Events waiting for a publish slot or the router"),
    "in_flight": ("events_in_flight", "Publishes awaiting the router's acknowledgement"),
    "seq_held": ("events_held", "Sequenced events held for a missing earlier one"),
    "connected": ("router_connected", "1 while a router session is attached"),
    "intake_running": ("intake_running", "1 while the ZeroMQ intake runs"),
}


class StatsCollector(Collector):
    """Turns one ``Bridge.snapshot()`` into metric families at each scrape."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        stats = self.snapshot()
        malformed: dict[str, int] = stats["malformed"]
        yield CounterMetricFamily(
            P + "frames_received",
            "Messages taken from ZeroMQ, valid or not",
            value=stats["received"] + sum(malformed.values()),
        )
        family = CounterMetricFamily(
            P + "frames_malformed", "Frames dropped as unusable, by reason", labels=["reason"]
        )
        for reason, count in sorted(malformed.items()):
            family.add_metric([reason], count)
        yield family
        refused = CounterMetricFamily(
            P + "events_schema_refused",
            "Frames refused because the payload did not fit the event's schema, by event "
            "(also in frames_malformed, reason schema_mismatch)",
            labels=["event"],
        )
        for event, count in sorted(stats["schema_refused"].items()):
            refused.add_metric([event], count)
        yield refused
        for key, (name, text) in COUNTERS.items():
            yield CounterMetricFamily(P + name, text, value=stats[key])
        yield CounterMetricFamily(
            P + "router_reconnects",
            "Sessions joined after the first (connection lost and regained)",
            value=max(stats["connects"] - 1, 0),
        )
        for key, (name, text) in GAUGES.items():
            yield GaugeMetricFamily(P + name, text, value=float(stats[key]))


class BridgeMetrics:
    """The bridge's registry: its stats, the process, and two latency histograms."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.registry: CollectorRegistry = new_registry()
        self.registry.register(StatsCollector(snapshot))
        self.ack_latency = Histogram(
            P + "ack_latency_seconds",
            "Publish sent to the router's acknowledgement",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.event_age = Histogram(
            P + "event_age_seconds",
            "Envelope ts (stamped by the sender, the API at commit) to the router's "
            "acknowledgement, by route",
            ["route"],
            buckets=AGE_BUCKETS,
            registry=self.registry,
        )
        self._ages: dict[str, Any] = {}  # route → its histogram child, looked up once

    def acknowledged(self, route: str, ts_ms: int, sent: float) -> None:
        """One acknowledged publish: ``sent`` is its ``perf_counter`` at publish."""
        self.ack_latency.observe(time.perf_counter() - sent)
        child = self._ages.get(route)
        if child is None:  # routes are the config's event names: a bounded set
            child = self._ages[route] = self.event_age.labels(route)
        child.observe(max(time.time() - ts_ms / 1000, 0.0))  # clock skew is not negative age
