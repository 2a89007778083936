"""``sandbar routes`` and ``sandbar topics``: what the bridge routes and what the topics
service serves, as tables (like ``flask routes``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bridge.config import load_routes
from topics.registry import HOOKS, TopicRouter, load_app


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def routes_table(path: str | Path) -> str:
    """Each route of the bridge YAML: event → topic template, and its publish options."""
    rows = []
    for name, route in load_routes(path):
        options = ["retain"] if route.retain else []
        options += [f"to_authids={route.to_authids}"] if route.to_authids else []
        options += [f"exclude_authids={route.exclude_authids}"] if route.exclude_authids else []
        rows.append([name, route.topic.source, ", ".join(options)])
    return table(["Event", "Topic", "Options"], rows)


def topics_table(topics: TopicRouter) -> str:
    """Each declared topic: pattern, match, the hooks it defines, and how clients send."""
    rows = []
    for topic in topics:
        hooks = [hook for hook in HOOKS if topic.hook(hook) is not None]
        sends = (
            "session.call (on_publish)"
            if topic.handles_publish
            else "publish (client_publish)"
            if topic.client_publish
            else "-"
        )
        rows.append([topic.name, topic.match, ", ".join(hooks) or "-", sends])
    return table(["Pattern", "Match", "Hooks", "Clients send"], rows)


def topics_listing(spec: str) -> str:
    return topics_table(load_app(spec))
