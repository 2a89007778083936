"""The router's Prometheus metrics, read from Crossbar's own counters inside its worker.

Crossbar has no metrics endpoint, but the router worker already counts: ``Router.stats()``
(routed messages by WAMP type, sent and received), the sessions of each auth role, the
broker's subscriptions, and every transport's serializer (bytes and messages in and out).
A component of ours in that worker (sandbar/router_component.py, like RouterGuard) reads
them where they live, at scrape time: no message costs anything more, nothing is counted
twice, and the worker's own memory and CPU are the process's. The alternatives cost more
and see less: the management API's realm stats need a controller session and lack bytes
and roles; ``wamp.session.on_stats`` meta events must be switched on per realm, send one
event per session per period, and give bytes in and out only as one sum.

Bytes: a serializer's counts are reset when its connection closes (Crossbar publishes
them as ``wamp.session.on_stats``), so each reset first adds them to the worker's totals;
the rest is read from the serializers of sessions still open. Every byte is counted once
and the sum never goes back. The endpoint is served by the worker's reactor, so reading
the router's dictionaries never races the code that changes them.
"""

from __future__ import annotations

import functools
import os
import weakref
from collections.abc import Callable, Iterator
from typing import Any, cast

from autobahn.wamp.serializer import Serializer
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from pydantic import Field

from sandbar import router_idle
from sandbar.config import StrictModel, validate_config
from sandbar.metrics import DEFAULT_HOST, MetricsSettings

P = "sandbar_router_"


class MetricsExtra(StrictModel):
    """The ``extra`` of the RouterMetrics component: where ``/metrics`` is served (0: off)."""

    host: str = DEFAULT_HOST
    port: int = Field(0, ge=0, le=65535)


def metrics_settings(extra: dict[str, Any]) -> MetricsSettings:
    """The component's ``extra`` (Crossbar adds ``cbdir``), validated: a bad key or value
    stops the router at start, naming it."""
    ours = {key: value for key, value in extra.items() if key != "cbdir"}
    parsed = validate_config(MetricsExtra, ours, source="RouterMetrics extra")
    return MetricsSettings(host=parsed.host, port=parsed.port)


class _Flushed:
    """Bytes of serializer counts that were reset (closed connections), per direction."""

    sent = 0
    received = 0


def count_serializer_resets() -> None:
    """Have every serializer reset add its counts to ``_Flushed`` first. Idempotent."""
    original = getattr(Serializer.stats, "__wrapped__", Serializer.stats)

    @functools.wraps(original)
    def stats(self: Any, reset: bool = True, details: bool = False) -> Any:
        if reset:
            _Flushed.sent += self._serialized_bytes
            _Flushed.received += self._unserialized_bytes
        return original(self, reset=reset, details=details)

    Serializer.stats = stats  # type: ignore[method-assign]


class RouterCollector(Collector):
    """One realm's router (``crossbar.router.router.Router``) as metric families."""

    def __init__(self, router: Any) -> None:
        self.router = router
        self.joined: dict[str, int] = {}
        #: serializers of sessions that left while their connection stays open (a GOODBYE):
        #: their counts are reset, and so flushed, only when it closes
        self._parted: weakref.WeakSet[Any] = weakref.WeakSet()
        _wrap(router, "_session_joined", self._on_joined)
        _wrap(router, "_session_left", self._on_left)

    def _on_joined(self, session: Any, details: Any, *_: Any) -> None:
        self.joined[details.authrole] = self.joined.get(details.authrole, 0) + 1

    def _on_left(self, session: Any, *_: Any) -> None:
        serializer = _serializer(session)
        if serializer is not None:
            self._parted.add(serializer)

    def collect(self) -> Iterator[Metric]:
        yield from self._sessions()
        yield from self._subscriptions()
        yield from self._messages()
        yield from self._bytes()
        yield from worker_families()

    def _sessions(self) -> Iterator[Metric]:
        by_role = self.router._authrole_to_sessions
        roles = sorted((set(self.router._roles) - {"trusted"}) | set(by_role) | set(self.joined))
        current = GaugeMetricFamily(
            P + "sessions", "Sessions joined now, by auth role", labels=["role"]
        )
        joined = CounterMetricFamily(
            P + "sessions_joined", "Sessions joined since start, by auth role", labels=["role"]
        )
        for role in roles:
            current.add_metric([role], len(by_role.get(role, ())))
            joined.add_metric([role], self.joined.get(role, 0))
        yield current
        yield joined

    def _subscriptions(self) -> Iterator[Metric]:
        observations = self.router._broker._subscription_map._observation_id_to_observation
        yield GaugeMetricFamily(
            P + "subscriptions",
            "Subscriptions of sessions now (one per session and topic or pattern)",
            value=sum(len(each.observers) for each in observations.values()),
        )
        yield GaugeMetricFamily(
            P + "subscribed_topics",
            "Topics and patterns with at least one subscriber now",
            value=len(observations),
        )

    def _messages(self) -> Iterator[Metric]:
        stats = self.router.stats()["messages"]
        for direction, text in (("received", "received from"), ("sent", "sent to")):
            family = CounterMetricFamily(
                P + f"messages_{direction}",
                f"WAMP messages routed, {text} sessions, by type (HELLO, WELCOME, GOODBYE "
                "and ABORT are the session's, not routed)",
                labels=["type"],
            )
            for kind, count in sorted(stats[direction].items()):
                family.add_metric([kind], count)
            yield family
        yield CounterMetricFamily(
            P + "events_delivered",
            "EVENT messages sent to subscribers (one per subscriber and publication)",
            value=stats["sent"].get("event", 0),
        )

    def _bytes(self) -> Iterator[Metric]:
        sent, received = _Flushed.sent, _Flushed.received
        for serializer in self._live_serializers():
            sent += serializer._serialized_bytes
            received += serializer._unserialized_bytes
        yield CounterMetricFamily(
            P + "received_bytes", "Serialized WAMP messages received, in bytes", value=received
        )
        yield CounterMetricFamily(
            P + "sent_bytes", "Serialized WAMP messages sent, in bytes", value=sent
        )

    def _live_serializers(self) -> set[Any]:
        live = set(self._parted)
        for sessions in self.router._authrole_to_sessions.values():
            for session in sessions:
                serializer = _serializer(session)
                if serializer is not None:
                    live.add(serializer)
        return live


def _serializer(session: Any) -> Any:
    """A remote session's serializer; None for a closed one or one inside the router."""
    transport = getattr(session, "_transport", None)
    return getattr(transport, "_serializer", None)


def _wrap(router: Any, name: str, after: Callable[..., None]) -> None:
    """Call ``after`` with the arguments of each call of one of this router's methods."""
    original = getattr(router, name)

    @functools.wraps(original)
    def wrapper(*args: Any) -> Any:
        result = original(*args)
        after(*args)
        return result

    setattr(router, name, wrapper)


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def worker_families() -> Iterator[Metric]:
    """This process's (the router worker's) CPU time and resident memory."""
    times = os.times()
    yield CounterMetricFamily(
        P + "worker_cpu_seconds",
        "CPU time of the router worker process, user and system",
        value=times.user + times.system,
    )
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            resident = int(statm.read().split()[1]) * _PAGE
    except OSError:  # not Linux: the peak instead (kilobytes there on Linux, bytes on macOS)
        import resource

        resident = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    yield GaugeMetricFamily(
        P + "worker_resident_memory_bytes",
        "Resident memory of the router worker process",
        value=resident,
    )
    sessionless = router_idle.installed()
    yield CounterMetricFamily(
        P + "sessionless_closed",
        "Browser connections closed for holding no WAMP session (sandbar/router_idle.py)",
        value=0 if sessionless is None else sessionless.closed,
    )


def registry_for(router: Any) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RouterCollector(router))
    return registry


def metrics_resource(registry: CollectorRegistry) -> Any:
    """A Twisted resource serving ``/metrics`` from the reactor's own thread."""
    from twisted.web.resource import Resource

    class Metrics(Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> bytes:
            request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode())
            return generate_latest(registry)

    root = Resource()
    root.putChild(b"metrics", cast(Any, Metrics()))
    return root
