"""Event payload schemas: declared with the event, compiled once, checked where it is sent.

A schema is a pydantic model class or a JSON Schema dict. It is checked when declared
(a bad one is a :class:`SchemaError` at import, not a surprise per event), compiled to one
validator per event name, and an event without a schema costs one dict lookup.

    schemas = EventSchemas()
    schemas.declare("article.created", Article)
    schemas.check("article.created", payload)   # raises PayloadMismatch naming the field
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match
from pydantic import BaseModel, ValidationError
from pydantic.errors import PydanticUserError

from sandbar.config import ConfigError

#: a JSON Schema dict without ``$schema`` is read as this draft
DEFAULT_VALIDATOR = jsonschema.Draft202012Validator

Problem = tuple[str, str]  # field path ('' for the payload itself), reason


class SchemaError(ConfigError):
    """A schema refused at declaration; the message names the event and the fix."""


class PayloadMismatch(ValueError):
    """A payload that does not fit its event's schema: a bug of whoever sent it."""

    def __init__(self, event: str, path: str, reason: str) -> None:
        where = f"field '{path}'" if path else "the payload"
        super().__init__(f"event '{event}': {where} does not fit its schema: {reason}")
        self.event, self.path, self.reason = event, path, reason


def _path(parts: Any) -> str:
    """``('tags', 0, 'name')`` as ``tags[0].name``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


def _model_checker(model: type[BaseModel]) -> Callable[[Any], Problem | None]:
    validator = model.__pydantic_validator__

    def check(payload: Any) -> Problem | None:
        try:
            validator.validate_python(payload)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            return _path(error["loc"]), error["msg"]
        return None

    return check


def _json_checker(schema: Mapping[str, Any]) -> Callable[[Any], Problem | None]:
    validator = jsonschema.validators.validator_for(schema, default=DEFAULT_VALIDATOR)(schema)

    def check(payload: Any) -> Problem | None:
        if validator.is_valid(payload):  # the cheap answer; the details only for a misfit
            return None
        error = best_match(validator.iter_errors(payload))
        return _path(error.absolute_path), error.message

    return check


@dataclass(frozen=True)
class EventSchema:
    """One event's compiled schema: its JSON Schema (for documents) and its check."""

    event: str
    source: Any  # the model class or dict it was declared with
    json_schema: dict[str, Any]
    _problem: Callable[[Any], Problem | None]

    def check(self, payload: Any) -> None:
        problem = self._problem(payload)
        if problem is not None:
            raise PayloadMismatch(self.event, *problem)


def compile_schema(event: str, schema: Any) -> EventSchema:
    """Check ``schema`` and compile it for ``event``; raise SchemaError saying what is wrong."""
    if isinstance(schema, EventSchema):
        return EventSchema(event, schema.source, schema.json_schema, schema._problem)
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        try:
            document = schema.model_json_schema()
        except PydanticUserError as exc:
            raise SchemaError(
                f"event '{event}': model {schema.__name__} has no JSON Schema ({exc}); "
                "use JSON-friendly field types"
            ) from None
        return EventSchema(event, schema, document, _model_checker(schema))
    if isinstance(schema, Mapping):
        cls = jsonschema.validators.validator_for(schema, default=DEFAULT_VALIDATOR)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = _path(exc.absolute_path) or "the top level"
            raise SchemaError(
                f"event '{event}': schema is not a valid JSON Schema ({cls.__name__}): "
                f"{exc.message} (at {where}); fix the schema dict"
            ) from None
        if schema.get("type", "object") != "object":
            raise SchemaError(
                f'event \'{event}\': schema must describe an object ("type": "object"), '
                f"not {schema.get('type')!r}: a payload is a JSON object"
            )
        return EventSchema(event, schema, dict(schema), _json_checker(schema))
    raise SchemaError(
        f"event '{event}': schema must be a pydantic model class or a JSON Schema dict, "
        f"not {type(schema).__name__}"
    )


class EventSchemas:
    """Event name → compiled schema; one name has one schema wherever it is declared."""

    def __init__(self) -> None:
        self._by_name: dict[str, EventSchema] = {}

    def declare(self, event: str, schema: Any, where: str = "") -> EventSchema:
        compiled = compile_schema(event, schema)
        known = self._by_name.get(event)
        if known is not None and known.json_schema != compiled.json_schema:
            raise SchemaError(
                f"event '{event}' is declared with two different schemas{where}: "
                "declare its payload once and share that model or dict"
            )
        self._by_name[event] = known or compiled
        return self._by_name[event]

    def merge(self, other: EventSchemas, where: str = "") -> None:
        for name, schema in other:
            self.declare(name, schema, where)

    def check(self, event: str, payload: Any) -> None:
        """Raise :class:`PayloadMismatch` if ``payload`` does not fit ``event``'s schema."""
        schema = self._by_name.get(event)
        if schema is not None:
            schema.check(payload)

    def get(self, event: str) -> EventSchema | None:
        return self._by_name.get(event)

    def __contains__(self, event: str) -> bool:
        return event in self._by_name

    def __iter__(self) -> Iterator[tuple[str, EventSchema]]:
        return iter(sorted(self._by_name.items()))

    def __len__(self) -> int:
        return len(self._by_name)
