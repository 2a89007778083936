"""A real OTLP/HTTP trace receiver for tests: the services' SDK exporters POST protobuf
``ExportTraceServiceRequest`` bodies to ``/v1/traces``, decoded here with opentelemetry-proto
(what a collector does first), and kept as plain :class:`Span` records."""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from sandbar.procs import free_port, wait_until

KINDS = {value: name.removeprefix("SPAN_KIND_") for name, value in ProtoSpan.SpanKind.items()}


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: str  # SERVER, PRODUCER, INTERNAL, ...
    trace_id: str
    span_id: str
    parent_id: str
    links: tuple[tuple[str, str], ...]  # (trace id, span id)
    attributes: dict[str, Any] = field(hash=False)
    error: bool = False


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def decode(body: bytes) -> list[Span]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for s in scope_spans.spans:
                spans.append(
                    Span(
                        service=str(resource.get("service.name")),
                        name=s.name,
                        kind=KINDS[s.kind],
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_id=s.parent_span_id.hex(),
                        links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in s.links),
                        attributes={a.key: _value(a.value) for a in s.attributes},
                        error=s.status.code == s.status.STATUS_CODE_ERROR,
                    )
                )
    return spans


class Receiver:
    """``with Receiver() as otlp:`` serves ``otlp.endpoint`` (OTEL_EXPORTER_OTLP_ENDPOINT)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.spans: list[Span] = []
        self.requests = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                spans = decode(body)
                with receiver._lock:
                    receiver.spans.extend(spans)
                    receiver.requests += 1
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def env(self) -> dict[str, str]:
        """What a service needs to export here, promptly (batches every 100 ms)."""
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def of_trace(self, trace_id: str) -> list[Span]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def wait_for(self, what: str, match: Any, timeout: float = 15.0) -> Span:
        """The first span ``match(span)`` accepts, once it has been exported."""
        found: list[Span] = []

        def seen() -> bool:
            with self._lock:
                found[:] = [s for s in self.spans if match(s)]
            return bool(found)

        wait_until(seen, timeout, f"span {what} exported")
        return found[0]


def main() -> None:
    """``python -m tests.support.otlp --port P``: a receiver in a process of its own (the
    benchmark's, so decoding spans costs its client nothing); prints the span count."""
    import argparse
    import time

    parser = argparse.ArgumentParser(prog="python -m tests.support.otlp")
    parser.add_argument("--port", type=int, required=True)
    with Receiver(parser.parse_args().port) as receiver:
        while True:
            time.sleep(5)
            print(f"spans received: {len(receiver.spans)}", flush=True)


if __name__ == "__main__":
    main()
