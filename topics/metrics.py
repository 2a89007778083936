"""The topics service's Prometheus metrics.

Decisions, handled publishes and hook errors are counted by the shared
:class:`~topics.authorizer.Authorizer`, so the in-process ``TopicTester`` counts
exactly as the service does; sessions and token checks by the service and its
authenticator. Labels are bounded: a topic is named by its declared pattern,
never by the concrete URI.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sandbar.metrics import LATENCY_BUCKETS, new_registry

P = "sandbar_topics_"
ACTIONS = frozenset({"subscribe", "publish", "call", "register"})
#: the topic label of a URI no declared topic matches (or refused before matching)
NO_TOPIC = "(none)"
#: the topic label of explain.subscribe calls
EXPLAIN = "(explain)"
INSPECT = "(inspect)"


class TopicsMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or new_registry()
        r = self.registry
        self.decisions = Counter(
            P + "decisions",
            "Authorization decisions by action, result (allow/deny) and topic pattern",
            ["action", "result", "topic"],
            registry=r,
        )
        self.decision_seconds = Histogram(
            P + "decision_seconds",
            "Time to decide one authorization, hooks included",
            ["action"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.handled_publishes = Counter(
            P + "handled_publishes",
            "session.call(topic, [message]) by result (published, handler_sent, rejected, "
            "or the refusal's error)",
            ["result"],
            registry=r,
        )
        self.hook_errors = Counter(
            P + "hook_errors",
            "Exceptions raised by topic code, by hook and topic pattern",
            ["hook", "topic"],
            registry=r,
        )
        self.tap_dropped = Counter(
            P + "inspector_tap_dropped",
            "Events an inspector tap did not forward: over its rate (topics/inspect_tap.py)",
            registry=r,
        )
        self.schema_refused = Counter(
            P + "events_schema_refused",
            "Events topic code sent whose payload did not fit the event's schema, by event",
            ["event"],
            registry=r,
        )
        self.sessions_joined = Counter(
            P + "sessions_joined",
            "Router sessions joined, by auth role (counted by the leader replica only)",
            ["role"],
            registry=r,
        )
        self.sessions_left = Counter(
            P + "sessions_left",
            "Router sessions left (counted by the leader replica only)",
            registry=r,
        )
        self.token_checks = Counter(
            P + "token_checks",
            "Browser tokens checked with the API, by result (ok, invalid, unavailable, missing)",
            ["result"],
            registry=r,
        )
        self.token_check_seconds = Histogram(
            P + "token_check_seconds",
            "Time of one GET /auth/whoami against the API",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.leader = Gauge(
            P + "leader", "1 while this replica runs the lifecycle hooks", registry=r
        )

    def decided(self, action: str, allow: bool, topic: str | None, seconds: float) -> None:
        action = action if action in ACTIONS else "other"
        self.decisions.labels(action, "allow" if allow else "deny", topic or NO_TOPIC).inc()
        self.decision_seconds.labels(action).observe(seconds)

    def hook_failed(self, hook: str, topic: str) -> None:
        self.hook_errors.labels(hook, topic).inc()
