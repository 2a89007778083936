"""Domain event signals that may declare their payload's schema where they are declared:

    events = Namespace()
    article_created = events.signal("article.created", schema=Article)

It is blinker's Namespace; ``schema`` (a pydantic model class or a JSON Schema dict) is
checked at once and kept in ``events.schemas``. The API refuses an emitted payload that does
not fit; the bridge checks every sender's frames against the same schemas (list the
namespace under ``schemas`` in the bridge YAML).
"""

from __future__ import annotations

from typing import Any

import blinker

from sandbar.schemas import EventSchema, EventSchemas


class Namespace(blinker.Namespace):
    """blinker's Namespace, with ``schema=`` on :meth:`signal`."""

    def __init__(self) -> None:
        super().__init__()
        self.schemas = EventSchemas()

    def signal(
        self, name: str, doc: str | None = None, *, schema: Any = None
    ) -> blinker.NamedSignal:
        signal = super().signal(name, doc)
        if schema is not None:
            signal.schema = self.schemas.declare(name, schema)  # type: ignore[attr-defined]
        return signal


def schema_of(signal: blinker.NamedSignal) -> EventSchema | None:
    """The schema ``signal`` was declared with, if any."""
    schema = getattr(signal, "schema", None)
    return schema if isinstance(schema, EventSchema) else None
