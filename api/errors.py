"""Every error the API returns is JSON: ``{"error": {"code", "message", "field"?}}``."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from api.writers import WriteTimeout
from sandbar.schemas import PayloadMismatch

#: the largest integer the databases store (BIGINT): no id or seq is larger
MAX_INTEGER = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,30}")


class ApiError(Exception):
    """An error with an HTTP status, a stable code and a message for people."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


def invalid(field: str, message: str) -> ApiError:
    return ApiError(400, "invalid_field", f"{field}: {message}", field=field)


def json_object(example: str) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 saying what to send, e.g. ``example``."""
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # the decoder's depth limit (~1000): a refusal, not a 500
        raise ApiError(
            400, "invalid_json", f"request body is nested too deeply; send {example}"
        ) from None
    if data is None:
        raise ApiError(
            400,
            "invalid_json",
            f"request body must be JSON with Content-Type: application/json, e.g. {example}",
        )
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", f"request body must be a JSON object, e.g. {example}")
    return data


def required_string(data: dict[str, Any], field: str) -> str:
    """``data[field]`` as a string that can be stored and sent as UTF-8, or a 400 naming it."""
    value = data.get(field)
    if value is None:
        raise invalid(field, "is required")
    if not isinstance(value, str):
        raise invalid(field, f"must be a string, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # JSON allows "\ud800"; UTF-8, SQL drivers and WAMP do not
        raise invalid(field, "must be valid Unicode: no lone surrogates such as \\ud800") from None
    return value


def required_text(data: dict[str, Any], field: str, max_length: int) -> str:
    """``data[field]`` as non-blank text a subscriber can receive, or a 400 naming it."""
    value = required_string(data, field)
    if not value.strip():
        raise invalid(field, "must not be empty")
    if "\x00" in value:
        # WAMP's JSON serializer reads a string that starts with NUL as base64 bytes: the
        # subscribers (AutobahnPython and AutobahnJS) would drop their connection on it.
        raise invalid(field, "must not contain NUL characters (\\u0000)")
    if len(value) > max_length:
        raise invalid(field, f"must be at most {max_length} characters")
    return value


def query_int(name: str, default: int, high: int, hint: str, low: int = 0) -> int:
    """Query parameter ``name``: digits for an integer from ``low`` to ``high`` (a 400 saying
    ``hint`` otherwise). Werkzeug's ``type=int`` would use the default for ``?limit=abc``
    and let integers through that no database column holds."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise invalid(name, hint)
    return int(raw)


def _api_error(exc: ApiError) -> tuple[Response, int, dict[str, str]]:
    return jsonify(exc.body()), exc.status, exc.headers


def _http_error(exc: HTTPException) -> tuple[Response, int]:
    status = exc.code or 500
    code = (exc.name or "error").lower().replace(" ", "_")
    return jsonify({"error": {"code": code, "message": exc.description}}), status


def _database_unavailable(exc: Exception) -> tuple[Response, int, dict[str, str]]:
    """The database is down, restarting or saturated: nothing was committed, try again."""
    current_app.logger.warning("database unavailable: %s", str(exc).splitlines()[0])
    body = {
        "error": {
            "code": "database_unavailable",
            "message": "database unavailable; try again shortly",
        }
    }
    return jsonify(body), 503, {"Retry-After": "2"}


def _event_mismatch(exc: PayloadMismatch) -> tuple[Response, int]:
    """An endpoint emitted an event its schema refuses: a server bug. Nothing was
    committed (the emit raised inside the transaction) and nothing was sent."""
    current_app.logger.error(
        "%s %s: event refused, nothing committed: %s", request.method, request.path, exc
    )
    current_app.extensions["sandbar_metrics"].schema_refused.labels(exc.event).inc()
    body = {
        "error": {
            "code": "internal_error",
            "message": f"internal error: event '{exc.event}' does not fit its schema (logged); "
            "nothing was saved",
        }
    }
    return jsonify(body), 500


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(PayloadMismatch, _event_mismatch)
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    for unavailable in (OperationalError, PoolTimeout, WriteTimeout):
        app.register_error_handler(unavailable, _database_unavailable)
