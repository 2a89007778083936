"""One log format for every Sandbar process, so supervisor output lines up.

``SANDBAR_LOG_FORMAT=json`` makes each line one JSON object (``ts``, ``service``, ``level``,
``logger``, ``message``, and ``event_id`` / ``trace_id`` where there is one), so one grep
follows an event through api, bridge and topics; ``text`` (the default) is for people.
``SANDBAR_LOG_LEVEL`` sets the level (``DEBUG`` adds one line per event in each service).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from sandbar import tracing

FORMAT_VAR = "SANDBAR_LOG_FORMAT"
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def log_format(env: Mapping[str, str] = os.environ) -> str:
    """``text`` or ``json``; anything else stops the service with the fix."""
    chosen = env.get(FORMAT_VAR, "").strip().lower() or "text"
    if chosen not in FORMATS:
        raise SystemExit(f"{FORMAT_VAR}={chosen!r} is not a log format: use 'text' or 'json'")
    return chosen


def _ids(record: logging.LogRecord) -> tuple[str | None, str | None]:
    """The record's event and trace ids: given with ``extra=`` (tracing.log_extra), else
    the trace of the work in hand (an API request)."""
    trace = getattr(record, "trace_id", None) or tracing.trace_id(tracing.current.get())
    return getattr(record, "event_id", None), trace


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        document: dict[str, Any] = {
            "ts": f"{seconds}.{int(record.msecs):03d}Z",
            "service": self.service,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        event_id, trace_id = _ids(record)
        if event_id:
            document["event_id"] = event_id
        if trace_id:
            document["trace_id"] = trace_id
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The readable format, with ``[event=… trace=…]`` where a record has them."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT, datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        event_id, trace_id = _ids(record)
        if not (event_id or trace_id):
            return line
        ids = " ".join(f"{k}={v}" for k, v in (("event", event_id), ("trace", trace_id)) if v)
        first, newline, rest = line.partition("\n")  # after the message, before a traceback
        return f"{first} [{ids}]{newline}{rest}"


def formatter(service: str, env: Mapping[str, str] = os.environ) -> logging.Formatter:
    return JsonFormatter(service) if log_format(env) == "json" else TextFormatter()


def setup_logging(level: str | None = None, service: str = "sandbar") -> None:
    """Configure stdlib logging once; ``SANDBAR_LOG_LEVEL`` overrides the default."""
    level = (level or os.environ.get("SANDBAR_LOG_LEVEL") or "INFO").upper()
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(service))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # Autobahn logs every connection attempt at INFO; its warnings and errors still show.
    # SQLAlchemy would log every statement at DEBUG, urllib3 every connection.
    for noisy in ("autobahn", "txaio", "sqlalchemy", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def as_json_line(service: str, line: str) -> str:
    """A child's output line as a JSON log line: its own if it is one, else wrapped (the
    router's, a traceback) so ``sandbar up``'s whole output stays one object per line."""
    if line.startswith("{") and line.endswith("}"):
        return line
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    return json.dumps(
        {"ts": f"{seconds}Z", "service": service, "level": "INFO", "message": line},
        ensure_ascii=False,
    )
