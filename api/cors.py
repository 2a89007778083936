"""CORS for the listed origins only, so the demo page (served by the router) can call the API.

A request whose ``Origin`` is in the list gets ``Access-Control-Allow-Origin`` echoed back;
any other origin gets no CORS headers, so its browser blocks the response. ``"*"`` in the
list allows every origin (no cookies are used: tokens travel in the Authorization header). Preflight ``OPTIONS``
requests are answered by Flask's automatic OPTIONS handling; this adds the CORS headers.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask, Response, request

ALLOWED_HEADERS = "Content-Type, Authorization, X-Sandbar-Session"
PREFLIGHT_MAX_AGE = "600"  # seconds a browser may cache the preflight answer


def allow_origins(app: Flask, origins: Iterable[str]) -> None:
    """Answer cross-origin requests from ``origins`` (exact ``scheme://host[:port]``)."""
    allowed = frozenset(origin.rstrip("/") for origin in origins)

    @app.after_request
    def add_cors_headers(response: Response) -> Response:
        origin = request.headers.get("Origin")
        response.vary.add("Origin")
        if origin is None or not (origin in allowed or "*" in allowed):
            return response
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = "Location"
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
        return response
