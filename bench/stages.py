"""CPU per stage of one ``POST /articles``: wrap the kit's functions with thread-CPU meters.

Inclusive times (a stage's time contains its callees'), µs per POST of the request
thread's own CPU (``time.thread_time``): what the request pays, not what it waits for.
Used by bench/profile_post.py ``--stages``.
"""

from __future__ import annotations

import functools
import importlib
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask

#: (label, "module:attribute" or "module:Class.method")
STAGES = (
    ("token: signature (itsdangerous)", "itsdangerous.timed:TimedSerializer.loads"),
    ("token: user row read", "api.auth:Tokens.identify"),
    ("JSON body parse", "api.articles:json_object"),
    ("signal dispatch + record", "api.push:Push.emit"),
    ("record: route resolve", "bridge.routes:RouteTable.resolve"),
    ("record: topic counter (before 0002)", "api.outbox:next_seq"),
    ("record: floor read (before 0002)", "api.outbox:floors"),
    ("record: numbered insert (SQLite)", "api.backends:SqliteBackend.insert_event"),
    ("record: numbered insert (PostgreSQL)", "api.backends:PostgresBackend.insert_event"),
    ("writer turn (take)", "api.writers:SqliteWriters._flock"),
    ("send after commit", "api.outbox:Outbox._send_committed"),
    ("envelope encode", "bridge.envelope:Envelope.to_bytes"),
    ("ZeroMQ send", "zmq.sugar.socket:Socket.send"),
    ("SQL execute (all)", "sqlalchemy.engine.base:Connection.execute"),
    ("transaction: begin", "sqlalchemy.engine.base:Connection.begin"),
    ("transaction: commit", "sqlalchemy.engine.base:RootTransaction._do_commit"),
    ("connection checkout", "sqlalchemy.engine.base:Engine.connect"),
    ("connection return", "sqlalchemy.engine.base:Connection.close"),
)


class StageMeter:
    """Accumulates the request thread's CPU in each wrapped function."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.thread = threading.get_ident()
        self._undo: list[Callable[[], None]] = []

    def _wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        meter = self

        @functools.wraps(fn)
        def metered(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != meter.thread:
                return fn(*args, **kwargs)
            began = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                meter.cpu[label] += time.thread_time() - began

        return metered

    def wrap_app(self, app: Flask) -> None:
        """The view and the request hooks, which Flask holds by reference."""
        view = "articles.create_article"
        original = app.view_functions[view]
        app.view_functions[view] = self._wrap("view (login check + create_article)", original)
        self._undo.append(lambda: app.view_functions.__setitem__(view, original))
        for kind in ("before_request_funcs", "after_request_funcs"):
            hooks = getattr(app, kind)[None]
            saved = list(hooks)
            hooks[:] = [self._wrap(f"hooks: {h.__name__}", h) for h in hooks]
            self._undo.append(functools.partial(hooks.__setitem__, slice(None), saved))

    @contextmanager
    def installed(self) -> Iterator[StageMeter]:
        for label, spec in STAGES:
            module_name, _, path = spec.partition(":")
            owner: Any = importlib.import_module(module_name)
            *parents, attr = path.split(".")
            for parent in parents:
                owner = getattr(owner, parent)
            if not hasattr(owner, attr):  # another version of the code: nothing to meter
                continue
            original = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
            setattr(owner, attr, self._wrap(label, original))
            self._undo.append(functools.partial(setattr, owner, attr, original))
        try:
            yield self
        finally:
            for undo in reversed(self._undo):
                undo()
