"""Forward marked domain events to the push server (the bridge).

The Flask way of Sandstone's ``$app->forwardEventToPushServer('ARTICLE_CREATED')``::

    push = Push(app, engine)
    push.forward(article_created, lambda article: article)

and in a controller, the change and the events it causes commit together::

    with transaction() as conn:
        conn.execute(...)
        article_created.send(app, article=...)

By default (``delivery="reliable"``) events go through the transactional outbox
(api/outbox.py): written in the same transaction, sent after commit, resent until
the bridge acknowledges them. With ``delivery="fire_and_forget"`` they are sent
over ZeroMQ after commit and not tracked.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterator
from typing import Any

from blinker import NamedSignal
from flask import Flask, current_app
from sqlalchemy import Connection, Engine

from api.backends import begin_write
from api.others import sender_session
from api.outbox import Outbox
from bridge.client import EventSender, SendError
from bridge.envelope import Envelope
from sandbar import tracing
from sandbar.events import schema_of
from sandbar.schemas import EventSchemas

log = logging.getLogger("sandbar.api.push")

PayloadFactory = Callable[..., dict[str, Any]]

_after_commit: contextvars.ContextVar[list[Envelope] | None] = contextvars.ContextVar(
    "push_after_commit", default=None
)


def _kwargs_as_payload(**kwargs: Any) -> dict[str, Any]:
    return kwargs


def transaction() -> contextlib.AbstractContextManager[Connection]:
    """The current app's unit of work: a DB transaction whose events go out on commit."""
    push: Push = current_app.extensions["sandbar_push"]
    return push.transaction()


class Push:
    """Flask extension that forwards the signals it is told to forward."""

    def __init__(
        self,
        app: Flask | None = None,
        engine: Engine | None = None,
        *,
        sender: EventSender | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self.app: Flask | None = None
        self.engine = engine
        self.sender = sender
        self.outbox = outbox
        self.forwarded: dict[str, PayloadFactory] = {}
        #: the forwarded signals' payload schemas: a misfit is refused before commit
        self.schemas = EventSchemas()
        self._receivers: list[Callable[..., None]] = []  # blinker holds receivers weakly
        if app is not None:
            self.init_app(app, engine, sender=sender, outbox=outbox)

    def init_app(
        self,
        app: Flask,
        engine: Engine | None = None,
        *,
        sender: EventSender | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self.app = app
        self.engine = engine or app.extensions["sandbar_db"]
        self.outbox = outbox
        if outbox is None and sender is None:
            sender = app.config["SANDBAR"].event_sender()
        self.sender = sender
        app.extensions["sandbar_push"] = self

    def forward(self, signal: NamedSignal, payload: PayloadFactory | None = None) -> None:
        """Send every emission of ``signal`` by this app to the bridge, named ``signal.name``."""
        if signal.name in self.forwarded:
            raise ValueError(f"event '{signal.name}' is already forwarded")
        if self.app is None:
            raise RuntimeError("call Push.init_app(app) before forward()")
        make_payload = payload or _kwargs_as_payload
        schema = schema_of(signal)
        if schema is not None:
            self.schemas.declare(signal.name, schema)

        def receiver(_sender: Any, **kwargs: Any) -> None:
            self.emit(signal.name, make_payload(**kwargs))

        self.forwarded[signal.name] = make_payload
        self._receivers.append(receiver)
        signal.connect(receiver, sender=self.app)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        if self.outbox is not None:
            with self.outbox.transaction() as conn:
                yield conn
            return
        assert self.engine is not None
        pending: list[Envelope] = []
        token = _after_commit.set(pending)
        try:
            with begin_write(self.engine) as conn:
                yield conn
        finally:
            _after_commit.reset(token)
        for envelope in pending:  # committed
            self._send_now(envelope)

    def emit(self, name: str, payload: dict[str, Any]) -> Envelope:
        """Record (reliable) or queue for after commit (fire-and-forget) one event, and
        return it (with its topic and seq when recorded); a request naming its browser
        session (toOthers) leaves that session out. A payload that does not fit the
        event's schema raises PayloadMismatch: the transaction rolls back and the request
        fails (api/errors.py answers 500 and logs it)."""
        self.schemas.check(name, payload)
        others = sender_session()
        if self.outbox is not None:
            return self.outbox.emit(name, payload, others)
        envelope = Envelope(name=name, payload=payload, others=others, trace=tracing.for_event())
        pending = _after_commit.get()
        if pending is not None:
            pending.append(envelope)
        else:
            self._send_now(envelope)
        return envelope

    def _send_now(self, envelope: Envelope) -> None:
        assert self.sender is not None
        try:
            self.sender.send_envelope(envelope)
        except SendError as exc:
            log.error("event not forwarded: %s", exc)
