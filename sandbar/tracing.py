"""One trace per event: the W3C ``traceparent`` each event carries, and OpenTelemetry spans
when an exporter is configured.

Every event carries a traceparent from the request that caused it (its header, else one
minted here) through the outbox row, the envelope and the event's kwargs (``trace``), so
logs join up even with tracing off. Spans are made only when ``OTEL_EXPORTER_OTLP_ENDPOINT``
(or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, or ``OTEL_TRACES_EXPORTER``) is set: otherwise the
SDK is never imported, :data:`tracer` stays None and the hot paths test just that.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

from sandbar.config import ConfigError

#: version 00 as the W3C Trace Context spec has it (a later version's first four fields)
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
EXPORTERS = ("otlp", "console", "none")

#: the traceparent of the work in hand (an API request, a handled publish): what an event
#: recorded now carries, and what log lines show as ``trace_id``
current: contextvars.ContextVar[str | None] = contextvars.ContextVar("traceparent", default=None)
#: the service's OpenTelemetry tracer once :func:`setup` found an exporter; None: tracing off
tracer: Any = None
_set_up_in: int | None = None


def parse(value: str | None) -> str | None:
    """A valid traceparent, as version 00; None for anything else (which is then ignored,
    as the spec says: a bad header starts a new trace rather than failing the request)."""
    if not value or len(value) > 512:
        return None
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags = match.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    if version == "00" and match.end() != len(value.strip()):
        return None
    return f"00-{trace_id}-{span_id}-{flags}"


def mint() -> str:
    """A new trace (sampled, so services with tracing on record their part of it)."""
    ids = os.urandom(24).hex()  # one system call for the trace id and the span id
    return f"00-{ids[:32]}-{ids[32:]}-01"


def trace_id(traceparent: str | None) -> str | None:
    return traceparent[3:35] if traceparent else None


def for_event() -> str:
    """The traceparent an event created now carries: the current span's when tracing is on,
    else the work in hand's, else a new trace's."""
    if tracer is not None:
        from opentelemetry import trace

        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            return _format(context)
    return current.get() or mint()


def log_extra(event_id: str | None, traceparent: str | None) -> dict[str, str | None]:
    """``extra=`` for a log line about one event (sandbar/logs.py shows both fields)."""
    return {"event_id": event_id, "trace_id": trace_id(traceparent)}


# -- OpenTelemetry (only when an exporter is configured) --------------------------------


def enabled(env: Mapping[str, str] = os.environ) -> bool:
    """Is an exporter configured (and the SDK not disabled)?"""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def setup(service: str, env: Mapping[str, str] = os.environ) -> Any:
    """Start exporting this process's spans if an exporter is configured; return the tracer
    (None: tracing off). Once per process: a forked gunicorn worker sets up its own."""
    global tracer, _set_up_in
    if _set_up_in == os.getpid():
        return tracer
    _set_up_in = os.getpid()
    tracer = None
    if not enabled(env):
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": f"sandbar-{service}"}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(_exporter(env)))
    atexit.register(provider.shutdown)  # what is still batched leaves on a clean exit
    tracer = provider.get_tracer("sandbar")
    return tracer


def check(env: Mapping[str, str] = os.environ) -> str:
    """The exporter the environment asks for; ConfigError naming the fix if Sandbar has none
    such (services call this at start, so a typo fails once, not in every worker)."""
    name = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if name not in EXPORTERS:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER={name!r}: Sandbar ships the exporters {', '.join(EXPORTERS)}"
        )
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if name == "otlp" and protocol != "http/protobuf":
        raise ConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: Sandbar exports OTLP over HTTP "
            "(http/protobuf, port 4318 of a collector); set that, or unset it"
        )
    return name


def _exporter(env: Mapping[str, str]) -> Any:
    if check(env) == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _format(context: Any) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def traceparent_of(span: Any) -> str:
    return _format(span.get_span_context())


def context_of(traceparent: str | None) -> Any:
    """The OpenTelemetry context a traceparent names (an empty one for None)."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": traceparent or ""})


def start_span(
    name: str,
    kind: str,
    *,
    parent: str | None = None,
    link: bool = False,
    attributes: Mapping[str, Any] | None = None,
) -> Any:
    """A started span (tracing on only) of ``kind`` (SERVER, PRODUCER, …), child of the
    traceparent ``parent`` if given, and linked to it too if ``link`` (messaging spans link
    to the creating context, as the OpenTelemetry messaging conventions ask)."""
    from opentelemetry import trace

    context = context_of(parent) if parent else None
    links = []
    if link and context is not None:
        creating = trace.get_current_span(context).get_span_context()
        if creating.is_valid:
            links.append(trace.Link(creating))
    return tracer.start_span(
        name,
        context=context,
        kind=getattr(trace.SpanKind, kind),
        attributes=dict(attributes or {}),
        links=links,
    )


@contextlib.contextmanager
def active(span: Any) -> Iterator[Any]:
    """Make ``span`` the current one (for what is recorded and logged inside), and end it;
    an exception marks it failed."""
    from opentelemetry import trace

    token = current.set(traceparent_of(span))
    try:
        with trace.use_span(span, end_on_exit=True, record_exception=True):
            yield span
    finally:
        current.reset(token)


def spanning(name: str, kind: str = "INTERNAL", **attributes: Any) -> Any:
    """``with spanning("commit"):`` a span when tracing is on; nothing at all when off."""
    if tracer is None:
        return contextlib.nullcontext()
    return active(start_span(name, kind, attributes=attributes))  # child of the current span


def fail(span: Any, error_type: str, description: str) -> None:
    """End ``span`` as failed, with the conventions' ``error.type``."""
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, description))
    span.end()
