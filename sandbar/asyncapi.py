"""An AsyncAPI 3.0.0 document of what browsers see: generated, never written by hand.

Every declared topic is a channel (its pattern the address, its ``{parameters}`` the
channel's), carrying the events the bridge routes to it and those its topic code sends,
each with its payload schema (sandbar/schemas.py) and the kwargs every event carries.
Operations say what a browser may do there: subscribe (``receive``), and send by
``session.call`` (``on_publish``) or ``session.publish`` (``client_publish``), with the
WAMP errors a refusal carries. ``sandbar asyncapi`` writes it; the API serves it at
``GET /asyncapi.json``.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bridge.config import load_routes_config
from bridge.routes import BACKEND_NAMESPACES, RouteTable
from bridge.schemas import event_schemas
from sandbar.schemas import EventSchema, EventSchemas
from topics.patterns import CONVERTERS, Parameter
from topics.registry import Topic, TopicRouter, load_app

VERSION = "3.0.0"
DEFAULT_ROUTER = "127.0.0.1:8080"
KWARGS = "EventKwargs"

#: the kwargs of every event a browser receives (the payload is args[0]); see bridge/envelope.py
EVENT_KWARGS: dict[str, Any] = {
    "type": "object",
    "description": "WAMP keyword arguments of every event; the payload is the event's args[0]",
    "properties": {
        "id": {"type": "string", "description": "unique event id, traced end to end"},
        "name": {"type": "string", "description": "the event name (the message's name)"},
        "ts": {"type": "integer", "description": "when it was sent (committed), unix ms"},
        "seq": {
            "type": "integer",
            "description": "per-topic sequence number, on events from the API's outbox only; "
            "catch up with GET /events?topic=…&after=<seq>",
        },
        "epoch": {
            "type": "string",
            "description": "the outbox whose numbering seq is (with seq); a new one: reload",
        },
    },
    "required": ["id", "name", "ts"],
}
UNDECLARED: dict[str, Any] = {"description": "no schema declared: any JSON value"}

SUBSCRIBE_ERRORS = [
    {
        "error": "wamp.error.not_authorized",
        "when": "no topic declares the URI, or its on_subscribe refused (the reason says why; "
        "explain.subscribe tells a denied session why)",
    },
]
CALL_ERRORS = [
    {"error": "sandbar.error.rejected", "when": "on_publish refused the message (its reason)"},
    {"error": "wamp.error.not_authorized", "when": "the sender may not read this topic"},
    {"error": "sandbar.error.rate_limited", "when": "too many messages a second"},
    {"error": "sandbar.error.invalid_argument", "when": "not exactly one argument, the message"},
    {
        "error": "sandbar.error.internal",
        "when": "topic code failed, or its result did not fit the event's schema (logged)",
    },
]
PUBLISH_ERRORS = [
    {"error": "wamp.error.not_authorized", "when": "can_publish or on_subscribe refused"},
]


def _id(text: str) -> str:
    """A component or channel key: word characters, dots and dashes only."""
    return re.sub(r"[^\w.-]", "_", text)


def _address(topic: Topic) -> str:
    parts = [f"{{{p.name}}}" if isinstance(p, Parameter) else p for p in topic.pattern.parts]
    return ".".join(parts)


def _parameter(parameter: Parameter) -> dict[str, Any]:
    named = {regex: name for name, (regex, _) in CONVERTERS.items()}
    kind = named.get(parameter.regex.pattern)
    shape = f"{kind} (converter)" if kind else f"matching {parameter.regex.pattern}"
    return {"description": f"one URI part, {shape}"}


def _schemas(schema: EventSchema, components: dict[str, Any]) -> dict[str, Any]:
    """The payload schema, its nested models lifted into components.schemas."""
    if isinstance(schema.source, type) and issubclass(schema.source, BaseModel):
        document = schema.source.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, nested in document.pop("$defs", {}).items():
            components[_id(name)] = nested
        return document
    return schema.json_schema


class _Builder:
    def __init__(self, topics: TopicRouter, routes: RouteTable, schemas: EventSchemas) -> None:
        self.topics, self.routes, self.schemas = topics, routes, schemas
        self.components: dict[str, Any] = {"schemas": {KWARGS: EVENT_KWARGS}, "messages": {}}
        self.channels: dict[str, Any] = {}
        self.operations: dict[str, Any] = {}

    def message(self, name: str) -> dict[str, str]:
        """The event ``name`` as a component message; a reference to it."""
        key = _id(name)
        if key not in self.components["messages"]:
            schema = self.schemas.get(name)
            payload = UNDECLARED
            if schema is not None:
                schema_key = _id(f"{name}.payload")
                self.components["schemas"][schema_key] = _schemas(
                    schema, self.components["schemas"]
                )
                payload = {"$ref": f"#/components/schemas/{schema_key}"}
            self.components["messages"][key] = {
                "name": name,
                "title": name,
                "contentType": "application/json",
                "payload": payload,
                "headers": {"$ref": f"#/components/schemas/{KWARGS}"},
            }
        return {"$ref": f"#/components/messages/{key}"}

    def events_of(self, topic: Topic) -> list[str]:
        """What a subscriber of ``topic`` can receive: routed events, then its own."""
        names = [name for name, route in self.routes if topic.could_match(route.topic.shape)]
        names += list(topic.events)
        if topic.handles_publish:
            names.append(topic.event_name)
        return list(dict.fromkeys(names))

    def channel(self, topic: Topic) -> None:
        key = _id(_address(topic).replace("{", "").replace("}", ""))
        if topic.match != "exact":
            key = f"{key}-{topic.match}"
        while key in self.channels:  # a literal topic spelt like another's pattern
            key += "-"
        channel: dict[str, Any] = {"address": _address(topic), "messages": {}}
        doc = (getattr(topic.handler, "__doc__", None) or "").strip()
        if doc:
            channel["description"] = doc.splitlines()[0]
        params = [p for p in topic.pattern.parts if isinstance(p, Parameter)]
        if params:
            channel["parameters"] = {p.name: _parameter(p) for p in params}
        if topic.match != "exact":
            channel["x-sandbar-match"] = topic.match
        received = self.events_of(topic)
        for name in received:
            channel["messages"][_id(name)] = self.message(name)
        ref = {"$ref": f"#/channels/{key}"}
        self.operations[f"{key}.subscribe"] = {
            "action": "receive",
            "channel": ref,
            "summary": f"session.subscribe('{_address(topic)}')",
            "messages": [{"$ref": f"#/channels/{key}/messages/{_id(n)}"} for n in received],
            "x-sandbar-errors": SUBSCRIBE_ERRORS,
        }
        if topic.handles_publish or topic.client_publish:
            self.sending(key, topic, channel)
        self.channels[key] = channel

    def sending(self, key: str, topic: Topic, channel: dict[str, Any]) -> None:
        call = topic.handles_publish
        message = "send.call" if call else "send.publish"
        channel["messages"][message] = {
            "name": message,
            "summary": "the message a browser sends; "
            + ("on_publish checks and transforms it" if call else "published as sent"),
            "payload": UNDECLARED,
        }
        how = "session.call(uri, [payload])" if call else "session.publish(uri, [payload])"
        self.operations[f"{key}.{'call' if call else 'publish'}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{key}"},
            "summary": how,
            "description": (
                f"on_publish decides; subscribers then receive '{topic.event_name}'; the call "
                "returns the publication id"
                if call
                else "router fan-out, checked by can_publish"
            ),
            "messages": [{"$ref": f"#/channels/{key}/messages/{message}"}],
            "x-sandbar-errors": CALL_ERRORS if call else PUBLISH_ERRORS,
        }


def build(
    topics: TopicRouter,
    routes: RouteTable,
    schemas: EventSchemas,
    *,
    router: str = DEFAULT_ROUTER,
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of ``topics`` with ``routes`` and ``schemas``."""
    builder = _Builder(topics, routes, schemas)
    for topic in topics:
        if topic.name.split(".")[0] not in BACKEND_NAMESPACES:
            builder.channel(topic)
    return {
        "asyncapi": VERSION,
        "info": {
            "title": "Sandbar",
            "version": importlib.metadata.version("sandbar"),
            "description": "Events browsers receive over WAMP (realm sandbar) and what they "
            "may send; generated from the topics app, the bridge routes and the event schemas.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "router": {
                "host": "{router}",
                "pathname": "/ws",
                "protocol": "wamp",
                "description": "WAMP over WebSocket (AutobahnJS), realm 'sandbar'",
                "variables": {"router": {"default": router, "description": "host:port"}},
            }
        },
        "channels": builder.channels,
        "operations": builder.operations,
        "components": builder.components,
    }


def generate(
    bridge_config: str | Path, topics_app: str, *, router: str = DEFAULT_ROUTER
) -> dict[str, Any]:
    """The document of a bridge YAML (routes, ``schemas``) and a topics app (module:attribute)."""
    config = load_routes_config(bridge_config)
    topics = load_app(topics_app)
    schemas = event_schemas(config, topics, str(bridge_config))
    return build(topics, config.route_table(), schemas, router=router)
