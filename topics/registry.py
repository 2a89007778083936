"""The topic registry: declare topics the way Flask declares routes.

    topics = TopicRouter()

    @topics.topic("chat.{channel}")
    class Chat:
        def on_subscribe(self, session, channel): ...

``topic()`` is sugar over :meth:`TopicRouter.add_topic`; ``include()`` mounts
another router under a prefix, like a Flask blueprint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from topics.patterns import PatternError, TopicPattern

H = TypeVar("H")


@dataclass(frozen=True)
class Topic:
    pattern: TopicPattern
    handler: Any

    @property
    def name(self) -> str:
        return self.pattern.source


class TopicRouter:
    def __init__(self) -> None:
        self._topics: dict[str, Topic] = {}
        self._frozen_reason: str | None = None

    def add_topic(self, pattern: str, handler: Any) -> Topic:
        """Declare ``pattern``; a class handler is instantiated once, here."""
        self._check_open(pattern)
        compiled = TopicPattern.compile(pattern)
        if pattern in self._topics:
            raise PatternError(f"topic pattern '{pattern}' is already declared")
        topic = Topic(compiled, handler() if isinstance(handler, type) else handler)
        self._topics[pattern] = topic
        return topic

    def topic(self, pattern: str) -> Callable[[H], H]:
        """Decorator form of :meth:`add_topic`; returns the class or function unchanged."""

        def decorate(handler: H) -> H:
            self.add_topic(pattern, handler)
            return handler

        return decorate

    def include(self, other: TopicRouter, prefix: str = "") -> None:
        """Declare every topic of ``other`` here, each pattern under ``prefix``."""
        for topic in other:
            source = f"{prefix}.{topic.pattern.source}" if prefix else topic.pattern.source
            self.add_topic(source, topic.handler)

    def match(self, uri: str) -> tuple[Topic, dict[str, Any]] | None:
        """The first declared topic matching ``uri`` (exact patterns win) and its parameters."""
        for topic in sorted(self._topics.values(), key=lambda t: not t.pattern.is_exact):
            params = topic.pattern.match(uri)
            if params is not None:
                return topic, params
        return None

    def freeze(self, reason: str = "the topics service is running") -> None:
        self._frozen_reason = reason

    def _check_open(self, pattern: str) -> None:
        if self._frozen_reason is not None:
            raise RuntimeError(
                f"cannot declare '{pattern}': {self._frozen_reason}; declare topics at import time"
            )

    def __iter__(self) -> Iterator[Topic]:
        return iter(list(self._topics.values()))

    def __len__(self) -> int:
        return len(self._topics)
