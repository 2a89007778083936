"""Every error the API returns is JSON: ``{"error": {"code", "message", "field"?}}``."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, jsonify
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from api.writers import WriteTimeout


class ApiError(Exception):
    """An error with an HTTP status, a stable code and a message for people."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


def invalid(field: str, message: str) -> ApiError:
    return ApiError(400, "invalid_field", f"{field}: {message}", field=field)


def required_text(data: dict[str, Any], field: str, max_length: int) -> str:
    """``data[field]`` as non-blank text a subscriber can receive, or a 400 naming it."""
    value = data.get(field)
    if value is None:
        raise invalid(field, "is required")
    if not isinstance(value, str):
        raise invalid(field, f"must be a string, not {type(value).__name__}")
    if not value.strip():
        raise invalid(field, "must not be empty")
    if "\x00" in value:
        # WAMP's JSON serializer reads a string that starts with NUL as base64 bytes: the
        # subscribers (AutobahnPython and AutobahnJS) would drop their connection on it.
        raise invalid(field, "must not contain NUL characters (\\u0000)")
    if len(value) > max_length:
        raise invalid(field, f"must be at most {max_length} characters")
    return value


def _api_error(exc: ApiError) -> tuple[Response, int]:
    return jsonify(exc.body()), exc.status


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


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    for unavailable in (OperationalError, PoolTimeout, WriteTimeout):
        app.register_error_handler(unavailable, _database_unavailable)
