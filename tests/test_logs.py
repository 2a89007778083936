"""The pieces of tracing and logging that need no stack, and ``sandbar up``'s own output in
JSON: its supervisor's lines, its services' lines, all one JSON object per line."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import pytest

from sandbar import tracing
from sandbar.logs import JsonFormatter, TextFormatter, as_json_line, log_format
from tests.support.procs import BIN, Proc, free_port, wait_until
from tests.test_up import CHEAP, _cheap_argv, _stack_env

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("header", "parsed"),
    [
        (VALID, VALID),
        (f" {VALID} ", VALID),
        (VALID.replace("00-", "01-", 1) + "-extra", VALID),  # a later version: its first fields
        (VALID + "-extra", None),  # version 00 has exactly four fields
        (VALID.upper(), None),
        ("ff" + VALID[2:], None),
        (f"00-{'0' * 32}-00f067aa0ba902b7-01", None),
        (f"00-4bf92f3577b34da6a3ce929d0e0e4736-{'0' * 16}-01", None),
        ("00-4bf92f35-00f067aa0ba902b7-01", None),
        ("", None),
        (None, None),
    ],
)
def test_traceparent_parsing_follows_w3c_trace_context(header: str | None, parsed: str | None):
    assert tracing.parse(header) == parsed


def test_minted_traceparents_are_valid_and_new():
    minted = {tracing.mint() for _ in range(100)}
    assert len(minted) == 100 and all(tracing.parse(t) == t for t in minted)


def test_tracing_is_off_unless_an_exporter_is_configured():
    assert not tracing.enabled({})
    assert tracing.enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing.enabled({"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing.enabled({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"})
    assert not tracing.enabled({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"})


def test_an_exporter_sandbar_lacks_stops_the_service_naming_the_fix(tmp_path: Path):
    env = {
        **_stack_env(),
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    }
    done = subprocess.run(
        [str(BIN / "sandbar-topics")], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert "OTEL_EXPORTER_OTLP_PROTOCOL='grpc'" in done.stderr and "http/protobuf" in done.stderr


def test_an_unknown_log_format_names_the_choices():
    with pytest.raises(SystemExit, match="SANDBAR_LOG_FORMAT='xml' is not a log format"):
        log_format({"SANDBAR_LOG_FORMAT": "xml"})


def _record(**extra: str) -> logging.LogRecord:
    record = logging.LogRecord("sandbar.x", logging.WARNING, __file__, 1, "a %s", ("b",), None)
    record.__dict__.update(extra)
    return record


def test_json_and_text_lines_carry_the_event_and_trace_ids():
    ids = tracing.log_extra("e1", VALID)
    line = json.loads(JsonFormatter("bridge").format(_record(**ids)))  # type: ignore[arg-type]
    assert line["service"] == "bridge" and line["level"] == "WARNING" and line["message"] == "a b"
    assert (line["event_id"], line["trace_id"]) == ("e1", tracing.trace_id(VALID))
    assert "event_id" not in json.loads(JsonFormatter("bridge").format(_record()))
    text = TextFormatter().format(_record(**ids))  # type: ignore[arg-type]
    assert text.endswith(f"sandbar.x: a b [event=e1 trace={tracing.trace_id(VALID)}]")
    token = tracing.current.set(VALID)  # the work in hand's trace, without extra=
    try:
        assert json.loads(JsonFormatter("api").format(_record()))["trace_id"] == VALID[3:35]
    finally:
        tracing.current.reset(token)


def test_a_line_that_is_not_json_is_wrapped_as_its_services():
    wrapped = json.loads(as_json_line("router", "2026 crossbar says hi"))
    assert wrapped.pop("ts").endswith("Z")
    assert wrapped == {"service": "router", "level": "INFO", "message": "2026 crossbar says hi"}
    assert as_json_line("api", '{"service": "api"}') == '{"service": "api"}'


def test_sandbar_up_in_json_is_one_object_per_line(tmp_path: Path):
    ports = {name: free_port() for name in CHEAP}
    env = {**_stack_env(), "SANDBAR_LOG_FORMAT": "json"}
    up = Proc("up", _cheap_argv(ports, tmp_path / "run"), env, tmp_path)
    up.start()
    try:
        wait_until(lambda: "Sandbar is ready" in up.output(), 60, "stack ready", 0.05)
        wait_until(
            lambda: (
                {"topics", "bridge"}
                <= {
                    json.loads(line)["service"]
                    for line in up.output().splitlines()
                    if "unreachable" in line
                }
            ),
            30,
            "topics and bridge retrying",
            0.05,
        )
    finally:
        up.stop()
    lines = [json.loads(line) for line in up.output().splitlines()]  # each one JSON, or fails
    assert all(
        isinstance(line, dict) and {"service", "level", "message"} <= line.keys() for line in lines
    )
    assert {"up", "topics", "bridge"} <= {line["service"] for line in lines}
    [ready] = [line for line in lines if line["message"].startswith("Sandbar is ready")]
    assert ready["service"] == "up"
