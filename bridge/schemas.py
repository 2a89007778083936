"""The event schemas the bridge checks frames against: the namespaces the bridge YAML lists
under ``schemas`` and the events the topics app's topics declare (``events=``)."""

from __future__ import annotations

from pathlib import Path

from bridge.config import RoutesConfig, load_routes_config
from sandbar.config import ConfigError
from sandbar.events import Namespace
from sandbar.imports import load_object
from sandbar.schemas import EventSchemas
from topics.registry import TopicRouter, load_app

EXAMPLE = "api.signals:events"


def _namespace(spec: str, source: str) -> EventSchemas:
    found = load_object(spec, f"{source}: schemas", EXAMPLE, lambda v: isinstance(v, Namespace))
    if isinstance(found, Namespace):
        return found.schemas
    if isinstance(found, EventSchemas):
        return found
    raise ConfigError(
        f"{source}: schemas: '{spec}' is a {type(found).__name__}, not a "
        "sandbar.events.Namespace; point at the Namespace your signals are declared on"
    )


def event_schemas(
    config: RoutesConfig, topics: TopicRouter, source: str = "routes"
) -> EventSchemas:
    """Every schema the routes' events are declared with; two different ones for one
    event name are a ConfigError."""
    schemas = EventSchemas()
    for spec in config.schemas:
        schemas.merge(_namespace(spec, source), f" ({spec} and another declaration)")
    schemas.merge(topics.schemas, " (a topic's events= and a schemas namespace)")
    return schemas


def load_event_schemas(path: str | Path, topics_app: str) -> EventSchemas:
    """The schemas of the bridge YAML at ``path`` and the topics app ``topics_app``."""
    return event_schemas(load_routes_config(path), load_app(topics_app), str(path))
