"""Routes: event name → topic URI template filled from payload fields, plus publish options."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bridge.envelope import Envelope, MalformedFrame
from sandbar.uri import check_component, check_uri

if TYPE_CHECKING:
    from topics.registry import TopicRouter

#: Topics for backend services, not browsers (e.g. sandbar.auth.revoked): no topic declares them.
BACKEND_NAMESPACES = ("sandbar", "wamp")

_PLACEHOLDER = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")


@dataclass(frozen=True)
class TopicTemplate:
    """A topic URI such as ``chat.{channel}``: each ``{field}`` is one whole URI component."""

    source: str
    parts: tuple[str, ...]
    fields: tuple[str, ...]

    @classmethod
    def compile(cls, source: str) -> TopicTemplate:
        parts = tuple(source.split("."))
        fields: list[str] = []
        for part in parts:
            match = _PLACEHOLDER.match(part)
            if match:
                fields.append(match.group(1))
            elif "{" in part or "}" in part:
                raise ValueError(
                    f"topic '{source}': '{part}' mixes text and a placeholder; a placeholder "
                    "must be a whole URI part, e.g. 'chat.{channel}'"
                )
        if len(set(fields)) != len(fields):
            raise ValueError(f"topic '{source}': a placeholder appears twice")
        check_uri(".".join("x" if _PLACEHOLDER.match(p) else p for p in parts))
        return cls(source, parts, tuple(fields))

    @property
    def shape(self) -> tuple[str | None, ...]:
        """The literal parts, with ``None`` where a payload field goes."""
        return tuple(None if _PLACEHOLDER.match(p) else p for p in self.parts)

    def render(self, payload: dict[str, Any]) -> str:
        """Fill the placeholders from ``payload``; a missing or unusable field is malformed."""
        out = []
        for part in self.parts:
            match = _PLACEHOLDER.match(part)
            if not match:
                out.append(part)
                continue
            name = match.group(1)
            if name not in payload:
                raise MalformedFrame(
                    "missing_field", f"topic '{self.source}' needs payload field '{name}'"
                )
            value = payload[name]
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise MalformedFrame(
                    "bad_field", f"payload field '{name}' must be a string or integer"
                )
            try:
                out.append(check_component(str(value)))
            except ValueError as exc:
                raise MalformedFrame("bad_field", f"payload field '{name}': {exc}") from None
        return ".".join(out)


@dataclass(frozen=True)
class Publication:
    """One publish the bridge owes the router."""

    envelope: Envelope
    topic: str
    options: dict[str, Any] = field(default_factory=dict)
    template: str | None = None  # the route's topic, e.g. chat.{channel}: low cardinality


def _authids(payload: dict[str, Any], field_name: str) -> list[str]:
    value = payload.get(field_name)
    if isinstance(value, str | int) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, list) and value and all(isinstance(v, str | int) for v in value):
        return [str(v) for v in value]
    raise MalformedFrame(
        "bad_field", f"payload field '{field_name}' must be an authid or a non-empty list of them"
    )


@dataclass(frozen=True)
class Route:
    topic: TopicTemplate
    retain: bool = False
    to_authids: str | None = None
    exclude_authids: str | None = None

    def publication(self, envelope: Envelope) -> Publication:
        payload = envelope.payload
        options: dict[str, Any] = {}
        if self.retain:
            options["retain"] = True
        if self.to_authids:
            options["eligible_authid"] = _authids(payload, self.to_authids)
        if self.exclude_authids:
            options["exclude_authid"] = _authids(payload, self.exclude_authids)
        return Publication(envelope, self.topic.render(payload), options, self.topic.source)


class RouteTable:
    """Look up the route of an event by its name."""

    def __init__(self, routes: dict[str, Route]) -> None:
        self._routes = dict(routes)

    def __contains__(self, name: str) -> bool:
        return name in self._routes

    def __iter__(self) -> Iterator[tuple[str, Route]]:
        return iter(sorted(self._routes.items()))

    def unreachable(self, topics: TopicRouter) -> list[str]:
        """One message per route whose topic no declared topic matches: its events could
        reach no browser, since the topics service denies subscribing to undeclared URIs."""
        problems = []
        for name, route in self:
            if route.topic.parts[0] in BACKEND_NAMESPACES or topics.declares(route.topic.shape):
                continue
            nearest = topics.nearest(route.topic.source)
            hint = f"; the nearest declared topic is '{nearest}'" if nearest else ""
            problems.append(
                f"route '{name}' publishes to '{route.topic.source}', which no topic declares; "
                f"browsers could never subscribe to it{hint}"
            )
        return problems

    def resolve(self, envelope: Envelope) -> Publication:
        route = self._routes.get(envelope.name)
        if route is None:
            known = ", ".join(sorted(self._routes)) or "none"
            raise MalformedFrame(
                "unknown_event",
                f"no route for event '{envelope.name}' (known: {known}); add it under 'routes' "
                "in the bridge YAML",
            )
        publication = route.publication(envelope)
        if envelope.topic is not None and envelope.topic != publication.topic:
            raise MalformedFrame(
                "topic_mismatch",
                f"event '{envelope.name}' says topic '{envelope.topic}' but the bridge routes it "
                f"to '{publication.topic}': the API and the bridge read different route configs",
            )
        return publication
