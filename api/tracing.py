"""Each request continues the client's ``traceparent`` or starts a trace; the events it
records carry it (sandbar/tracing.py).

With tracing off a request costs one header read and, without a valid header, one new
traceparent (16 random bytes): no span, no OpenTelemetry import. The API mints one rather
than leaving the event without: its log lines, the bridge's and the subscriber's then
join up on one trace id. With tracing on each request is a SERVER span named
``METHOD route`` (the HTTP conventions), parent of the ``commit`` span of its events.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, g, request

from sandbar import tracing

#: where the gunicorn access log finds the request's traceparent (api/serve.py)
ENVIRON_KEY = "sandbar.traceparent"
HEADER = "traceparent"


def instrument(app: Flask) -> None:
    """Install the hooks for tracing on or off, as this process was set up."""
    if tracing.setup("api") is None:
        app.before_request(_continue_or_start)
        app.teardown_request(_forget)
        return
    app.before_request(_start_span)
    app.after_request(_answered)
    app.teardown_request(_end_span)


def _continue_or_start() -> None:
    traceparent = tracing.parse(request.headers.get(HEADER)) or tracing.mint()
    tracing.current.set(traceparent)
    request.environ[ENVIRON_KEY] = traceparent


def _forget(_exc: BaseException | None) -> None:
    tracing.current.set(None)  # the thread's next work is not this request's


# -- tracing on ---------------------------------------------------------------------------


def _start_span() -> None:
    from opentelemetry import context, trace

    rule = request.url_rule
    route = rule.rule if rule is not None else None
    attributes: dict[str, Any] = {
        "http.request.method": request.method,
        "url.path": request.path,
        "url.scheme": request.scheme,
    }
    if route is not None:
        attributes["http.route"] = route
    span = tracing.start_span(
        f"{request.method} {route}" if route else request.method,
        "SERVER",
        parent=tracing.parse(request.headers.get(HEADER)),
        attributes=attributes,
    )
    traceparent = tracing.traceparent_of(span)
    g.sandbar_span = (span, context.attach(trace.set_span_in_context(span)))
    tracing.current.set(traceparent)
    request.environ[ENVIRON_KEY] = traceparent


def _answered(response: Response) -> Response:
    held = g.get("sandbar_span")
    if held is not None:
        held[0].set_attribute("http.response.status_code", response.status_code)
        if response.status_code >= 500:
            from opentelemetry.trace import Status, StatusCode

            held[0].set_attribute("error.type", str(response.status_code))
            held[0].set_status(Status(StatusCode.ERROR))
    return response


def _end_span(exc: BaseException | None) -> None:
    held = g.pop("sandbar_span", None)
    tracing.current.set(None)
    if held is None:
        return
    from opentelemetry import context

    span, token = held
    if exc is not None:
        span.record_exception(exc)
    span.end()
    context.detach(token)
