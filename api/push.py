"""Forward marked domain events to the push server (the bridge).

The Flask way of Sandstone's ``$app->forwardEventToPushServer('ARTICLE_CREATED')``::

    push = Push(app)
    push.forward(article_created, lambda article: article)

Every ``article_created.send(app, article=...)`` is then wrapped in an envelope
(named after the signal) and sent to the bridge over ZeroMQ.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from blinker import NamedSignal
from flask import Flask

from bridge.client import EventSender, SendError

log = logging.getLogger("sandbar.api.push")

PayloadFactory = Callable[..., dict[str, Any]]


def _kwargs_as_payload(**kwargs: Any) -> dict[str, Any]:
    return kwargs


class Push:
    """Flask extension that forwards the signals it is told to forward."""

    def __init__(self, app: Flask | None = None, sender: EventSender | None = None) -> None:
        self.app: Flask | None = None
        self.sender = sender
        self.forwarded: dict[str, PayloadFactory] = {}
        self._receivers: list[Callable[..., None]] = []  # blinker holds receivers weakly
        if app is not None:
            self.init_app(app, sender)

    def init_app(self, app: Flask, sender: EventSender | None = None) -> None:
        self.app = app
        self.sender = sender or EventSender(app.config["SANDBAR"].bridge_endpoint)
        app.extensions["sandbar_push"] = self

    def forward(self, signal: NamedSignal, payload: PayloadFactory | None = None) -> None:
        """Send every emission of ``signal`` sent by this app to the bridge, named ``signal.name``."""
        if signal.name in self.forwarded:
            raise ValueError(f"event '{signal.name}' is already forwarded")
        make_payload = payload or _kwargs_as_payload

        def receiver(_sender: Any, **kwargs: Any) -> None:
            self.emit(signal.name, make_payload(**kwargs))

        if self.app is None:
            raise RuntimeError("call Push.init_app(app) before forward()")
        self.forwarded[signal.name] = make_payload
        self._receivers.append(receiver)
        signal.connect(receiver, sender=self.app)

    def emit(self, name: str, payload: dict[str, Any]) -> None:
        """Send one event now. A refused send is logged loudly; the request still succeeds."""
        assert self.sender is not None, "Push.init_app() was not called"
        try:
            envelope = self.sender.send(name, payload)
        except SendError as exc:
            log.error("event not forwarded: %s", exc)
            return
        log.debug("forwarded %s %s", name, envelope.id)
