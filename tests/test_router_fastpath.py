"""The router's lean WebSocket sends (sandbar/router_fastpath.py) leave Autobahn's own,
with their log lines, to a router that logs at trace level."""

from __future__ import annotations

from pathlib import Path

from sandbar.procs import wait_until
from tests.support.procs import Router
from tests.support.raw_websocket import RawWebSocket


def test_a_router_logging_at_trace_level_still_logs_each_message_it_sends(tmp_path: Path) -> None:
    router = Router(tmp_path, log_level="trace").start()
    try:
        with RawWebSocket(router.port) as browser:
            assert browser.hello()[0] == 2  # WELCOME, sent through Autobahn's own send
        wait_until(lambda: "WAMP-Transmit(" in router.proc.output(), 10, "send's trace line")
        wait_until(lambda: "bytes for peer" in router.proc.output(), 10, "sendData's debug line")
    finally:
        router.stop()
