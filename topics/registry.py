"""The topic registry: declare topics the way Flask declares routes.

    topics = TopicRouter()

    @topics.topic("chat.{channel}")
    class Chat:
        def on_subscribe(self, session, channel): ...

``topic()`` is sugar over :meth:`TopicRouter.add_topic`; ``include()`` mounts
another router under a prefix, like a Flask blueprint.
"""

from __future__ import annotations

import asyncio
import difflib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, Unpack

from sandbar.config import ConfigError
from sandbar.imports import load_object
from sandbar.schemas import EventSchemas
from sandbar.uri import check_name
from topics.patterns import Parameter, PatternError, TopicPattern
from topics.presence import check_keys
from topics.session import Addressing, Runtime

H = TypeVar("H")
Match = Literal["exact", "prefix", "wildcard"]

#: Hooks a topic may define; a plain function handler is its ``on_subscribe``.
HOOKS = ("on_subscribe", "on_subscribed", "on_unsubscribe", "on_publish", "can_publish")
#: Namespaces that are not the app's: the router's meta API, Sandbar's backend
#: procedures, and the public ``explain.*`` and ``presence.*`` helpers.
RESERVED = ("wamp", "sandbar", "explain", "presence")
#: The one setting naming the topics app, read by the topics service, the API and the bridge.
APP_VAR = "SANDBAR_TOPICS_APP"
DEFAULT_APP = "topics.examples:topics"


@dataclass(frozen=True)
class Topic:
    pattern: TopicPattern
    handler: Any
    match: Match = "exact"
    client_publish: bool = False
    #: senders need not pass ``on_subscribe`` (an inbox anyone may write to, few may read)
    write_only_senders: bool = False
    #: the authextra keys a presence list shows (None: the topic keeps no presence)
    presence: tuple[str, ...] | None = None
    #: the names of the events this topic declares a payload schema for (``events=``)
    events: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.pattern.source

    @property
    def event_name(self) -> str:
        """The ``name`` subscribers see on events from ``on_publish`` (``event_name`` attribute)."""
        return str(getattr(self.handler, "event_name", "message"))

    def hook(self, name: str) -> Callable[..., Any] | None:
        if (
            not isinstance(self.handler, type)
            and callable(self.handler)
            and not hasattr(self.handler, name)
        ):
            return self.handler if name == "on_subscribe" else None
        hook = getattr(self.handler, name, None)
        return hook if callable(hook) else None

    @property
    def handles_publish(self) -> bool:
        return self.hook("on_publish") is not None

    def could_match(self, parts: Sequence[str | None]) -> bool:
        """Whether some URI of this shape (``None``: a part filled in later) is this topic's."""
        if self.match == "prefix":
            literal = ".".join("\0" if p is None else p for p in parts).split("\0")[0]
            return literal.startswith(self.name) or self.name.startswith(literal)
        if len(parts) != len(self.pattern.parts):
            return False
        return all(
            _part_fits(mine, part) for mine, part in zip(self.pattern.parts, parts, strict=True)
        )


class TopicRouter:
    def __init__(self) -> None:
        self._topics: dict[tuple[str, Match], Topic] = {}
        self._frozen_reason: str | None = None
        self._runtime: Runtime | None = None
        self._parent: TopicRouter | None = None
        #: the payload schemas the topics declare; the service, the bridge and the API check them
        self.schemas = EventSchemas()

    # -- declaring ------------------------------------------------------------

    def add_topic(
        self,
        pattern: str,
        handler: Any = None,
        *,
        match: Match = "exact",
        client_publish: bool = False,
        write_only_senders: bool = False,
        presence: Sequence[str] | None = None,
        events: Mapping[str, Any] | None = None,
    ) -> Topic:
        """Declare ``pattern``. A class handler is instantiated once, here.

        ``match="prefix"`` or ``"wildcard"`` lets browsers make that kind of pattern
        subscription to exactly this (literal) URI; any other is denied.
        ``client_publish=True`` lets clients publish directly (router fan-out),
        checked by the optional ``can_publish(session, **params)``.
        A sender (handled or direct) must first pass ``on_subscribe``, as a subscriber
        would: who may not read a topic may not write to it either.
        ``write_only_senders=True`` lifts that for this topic (e.g. a support inbox that
        anyone may write to and only staff may read).
        ``presence=("user",)`` keeps a list of who is subscribed, one entry per user,
        showing those authextra keys (never a credential: refused here).
        ``events={"chat.message": ChatMessage}`` declares the payload schema (a pydantic
        model class or a JSON Schema dict) of events on this topic: ``on_publish``'s
        result (named ``event_name``), ``session.send``/``publish`` names, bridge routes.
        """
        self._check_open(pattern)
        compiled = _compile(pattern, match)
        if compiled.source.split(".")[0] in RESERVED:
            raise PatternError(
                f"topic pattern '{pattern}': the '{compiled.source.split('.')[0]}.' namespace is "
                f"reserved ({', '.join(RESERVED)}); choose another first part"
            )
        if (pattern, match) in self._topics:
            raise PatternError(f"topic pattern '{pattern}' is already declared")
        instance = handler() if isinstance(handler, type) else handler
        try:
            shown = check_keys(compiled.source, presence)
        except ValueError as exc:
            raise PatternError(str(exc)) from None
        names = self._declare_events(pattern, events or {})
        topic = Topic(compiled, instance, match, client_publish, write_only_senders, shown, names)
        _check_hooks(topic)
        self._topics[(pattern, match)] = topic
        return topic

    def _declare_events(self, pattern: str, events: Mapping[str, Any]) -> tuple[str, ...]:
        for name in events:
            try:
                check_name(name, "event name")
            except ValueError as exc:
                raise PatternError(f"topic '{pattern}': events: {exc}") from None
        for name, schema in events.items():  # SchemaError names the event and the fix
            self.schemas.declare(name, schema, f" (topic '{pattern}' and another)")
        return tuple(events)

    def topic(
        self,
        pattern: str,
        *,
        match: Match = "exact",
        client_publish: bool = False,
        write_only_senders: bool = False,
        presence: Sequence[str] | None = None,
        events: Mapping[str, Any] | None = None,
    ) -> Callable[[H], H]:
        """Decorator form of :meth:`add_topic`; returns the class or function unchanged."""

        def decorate(handler: H) -> H:
            self.add_topic(
                pattern,
                handler,
                match=match,
                client_publish=client_publish,
                write_only_senders=write_only_senders,
                presence=presence,
                events=events,
            )
            return handler

        return decorate

    def include(self, other: TopicRouter, prefix: str = "") -> None:
        """Declare every topic of ``other`` here, each pattern under ``prefix``."""
        for topic in other:
            source = f"{prefix}.{topic.pattern.source}" if prefix else topic.pattern.source
            self.add_topic(
                source,
                topic.handler,
                match=topic.match,
                client_publish=topic.client_publish,
                write_only_senders=topic.write_only_senders,
                presence=topic.presence,
                events={name: other.schemas.get(name) for name in topic.events},
            )
        other._parent = self

    # -- looking up ---------------------------------------------------------------

    def match(self, uri: str, match: Match = "exact") -> tuple[Topic, dict[str, Any]] | None:
        """The topic for ``uri`` (exact patterns win over parameterised ones) and its params."""
        if match != "exact":
            topic = self._topics.get((uri, match))
            return (topic, {}) if topic is not None else None
        candidates = [t for (_, m), t in self._topics.items() if m == "exact"]
        for topic in sorted(candidates, key=lambda t: not t.pattern.is_exact):
            params = topic.pattern.match(uri)
            if params is not None:
                return topic, params
        return None

    def declares(self, parts: Sequence[str | None]) -> bool:
        """Whether a URI of this shape (``None``: any one part) can match a declared topic."""
        return any(topic.could_match(parts) for topic in self)

    def nearest(self, source: str) -> str | None:
        """The declared pattern closest to ``source`` (for error messages)."""
        found = difflib.get_close_matches(source, [t.name for t in self], n=1, cutoff=0)
        return found[0] if found else None

    def __iter__(self) -> Iterator[Topic]:
        return iter(list(self._topics.values()))

    def __len__(self) -> int:
        return len(self._topics)

    # -- running ---------------------------------------------------------------------

    def freeze(self, reason: str = "the topics service is running") -> None:
        self._frozen_reason = reason

    def bind(self, runtime: Runtime | None) -> None:
        """Called by the service: from now on :meth:`publish` sends through the router."""
        self._runtime = runtime

    def publish(
        self, uri: str, payload: Any, **addressing: Unpack[Addressing]
    ) -> asyncio.Future[int | None]:
        """Send an event on ``uri``: to everyone, to some sessions or authids (all tabs of
        a user), or to all but some (see :class:`Addressing`). Returns a future of the
        publication id."""
        return self._running().publish(uri, payload, **addressing)

    async def subscriber_count(self, uri: str) -> int:
        """How many sessions are subscribed to ``uri`` now (the router's count)."""
        return await self._running().subscriber_count(uri)

    @property
    def settings(self) -> Mapping[str, Any]:
        """The running service's settings (``api_url``, ``allow_anonymous``, …), no secrets."""
        return self._running().settings

    def _running(self) -> Runtime:
        router = self
        while router._runtime is None and router._parent is not None:
            router = router._parent
        if router._runtime is None:
            raise RuntimeError("topics can send only while the topics service is running")
        return router._runtime

    def _check_open(self, pattern: str) -> None:
        if self._frozen_reason is not None:
            raise RuntimeError(
                f"cannot declare '{pattern}': {self._frozen_reason}; declare topics at import time"
            )


def _part_fits(mine: str | Parameter, part: str | None) -> bool:
    if part is None or mine == "":  # a placeholder, or a wildcard topic's empty part
        return True
    return part == mine if isinstance(mine, str) else bool(mine.regex.fullmatch(part))


def app_spec(env: Mapping[str, str] | None = None) -> str:
    """The topics app to serve: ``SANDBAR_TOPICS_APP``, else the shipped examples."""
    return (os.environ if env is None else env).get(APP_VAR) or DEFAULT_APP


def load_app(spec: str) -> TopicRouter:
    """Import ``module:attribute`` and check it is a TopicRouter; every failure is a
    ConfigError saying what is wrong and what to do. The current directory is importable
    (as with ``flask run`` and uvicorn), so a project's own module needs no PYTHONPATH."""
    router = load_object(spec, "topics app", DEFAULT_APP, lambda v: isinstance(v, TopicRouter))
    if not isinstance(router, TopicRouter):
        raise ConfigError(
            f"topics app '{spec}' is a {type(router).__name__}, not a TopicRouter; "
            "point at the TopicRouter() your topics are declared on"
        )
    return router


def _compile(pattern: str, match: Match) -> TopicPattern:
    if match == "exact":
        return TopicPattern.compile(pattern)
    if match not in ("prefix", "wildcard"):
        raise PatternError(f"topic pattern '{pattern}': match must be exact, prefix or wildcard")
    return TopicPattern.compile_literal(pattern, allow_empty=match == "wildcard")


def _check_hooks(topic: Topic) -> None:
    name = topic.pattern.source
    if topic.client_publish and topic.handles_publish:
        raise PatternError(
            f"topic '{name}': on_publish and client_publish=True exclude each other; "
            "handled messages go through on_publish, direct ones through can_publish"
        )
    if topic.hook("can_publish") and not topic.client_publish:
        raise PatternError(f"topic '{name}': can_publish needs client_publish=True")
    if topic.write_only_senders and not (topic.handles_publish or topic.client_publish):
        raise PatternError(
            f"topic '{name}': write_only_senders=True needs a way to send "
            "(on_publish, or client_publish=True)"
        )
    if topic.write_only_senders and topic.hook("on_subscribe") is None:
        raise PatternError(
            f"topic '{name}': write_only_senders=True without on_subscribe changes nothing "
            "(anyone may subscribe); drop the flag or add on_subscribe"
        )
    if topic.match != "exact" and topic.presence is not None:
        raise PatternError(
            f"topic '{name}': presence needs an exact topic, not a {topic.match} one"
        )
    if topic.match != "exact" and (topic.handles_publish or topic.client_publish):
        raise PatternError(f"topic '{name}': a {topic.match} topic is for subscribing only")
