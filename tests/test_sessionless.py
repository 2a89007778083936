"""Connections without a WAMP session are closed (sandbar/router_idle.py), at the router
and in proxy workers: before HELLO, and after GOODBYE (Crossbar keeps the WebSocket open
for a session to be reattached); a joined session that sends nothing stays."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbar.config import ConfigError
from sandbar.procs import free_port
from sandbar.router import config_from_args, render
from sandbar.router_idle import SessionlessGuard, close_reason
from tests.support.procs import Router
from tests.support.proxied import COUNTS, IDS
from tests.support.raw_websocket import RawWebSocket
from tests.test_metrics import scrape, value

TIMEOUT = 2.0
ANSWERS = {8, 50}  # ERROR or RESULT: any answer shows the connection is alive


@pytest.fixture(scope="module", params=COUNTS, ids=IDS)
def router(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Router]:
    proxies = int(request.param or 0)
    workdir = tmp_path_factory.mktemp(f"sessionless{proxies}")
    options = ("--sessionless-timeout", f"{TIMEOUT:g}")
    started = Router(workdir, proxies=proxies, metrics_port=free_port(), options=options).start()
    yield started
    started.stop()


def test_connections_without_a_session_are_closed_and_joined_ones_stay(router: Router) -> None:
    start = time.monotonic()
    silent = RawWebSocket(router.port, timeout=15)  # never says HELLO
    left = RawWebSocket(router.port, timeout=15)  # joins, leaves, keeps the connection
    joined = RawWebSocket(router.port, timeout=15)  # joins and sends nothing
    with silent, left, joined:
        assert left.hello()[0] == 2 and joined.hello()[0] == 2  # WELCOME
        left.send_message([6, {}, "wamp.close.close_realm"])
        assert left.receive_message()[0] == 6  # the GOODBYE answered: now no session
        after_goodbye = time.monotonic()

        reason = close_reason(TIMEOUT)
        assert silent.closed_by_peer() == reason
        assert time.monotonic() - start >= TIMEOUT - 0.1, "closed before the timeout"
        assert left.closed_by_peer() == reason
        assert time.monotonic() - after_goodbye >= TIMEOUT - 0.1, "closed before the timeout"

        time.sleep(max(0.0, start + 2 * TIMEOUT - time.monotonic()))  # past two timeouts
        joined.send_message([48, 1, {}, "sandbar.no_such_procedure", []])
        answer = joined.receive_message()  # a close frame raises ConnectionError here
        assert answer[0] in ANSWERS and answer[2] == 1, answer

    if not router.proxies:  # the router worker counts its own; proxies serve no metrics
        closed = value(scrape(router.metrics_url), "sandbar_router_sessionless_closed_total")
        assert closed >= 2


class _Session:
    def __init__(self, session_id: int | None, **more: Any) -> None:
        self._session_id = session_id
        self.__dict__.update(more)


class _Connection:
    def __init__(self, session: _Session | None) -> None:
        self._session = session


def test_the_sweep_marks_connections_and_expires_them_after_the_timeout() -> None:
    now = [100.0]
    guard = SessionlessGuard(10.0, clock=lambda: now[0])
    waiting = _Connection(_Session(None))  # before WELCOME
    joined = _Connection(_Session(7))
    proxied_left = _Connection(_Session(8, _backend_session=None))  # a proxy's, after GOODBYE
    proxied = _Connection(_Session(9, _backend_session=object()))
    for connection in (waiting, joined, proxied_left, proxied):
        guard.opened(connection)
    now[0] = 109.9
    assert guard.expired() == []
    now[0] = 110.0
    assert set(map(id, guard.expired())) == {id(waiting), id(proxied_left)}
    assert len(guard) == 2  # the expired are forgotten

    joined._session = None  # left: its timeout starts at the first sweep that sees it
    now[0] = 115.0
    assert guard.expired() == []
    now[0] = 124.9
    assert guard.expired() == []
    now[0] = 125.0
    assert guard.expired() == [joined]
    guard.lost(proxied)
    assert len(guard) == 0


def test_a_timeout_too_short_to_sign_in_is_refused_at_load() -> None:
    with pytest.raises(ConfigError, match=r"key 'sessionless_timeout': must be 0 .* at least 2 s"):
        config_from_args(["--sessionless-timeout", "0.5"])
    with pytest.raises(ConfigError, match=r"key 'sessionless_timeout': .* greater than or equal"):
        config_from_args(["--sessionless-timeout", "-1"])
    assert config_from_args(["--sessionless-timeout", "0"]).sessionless_timeout == 0
    assert config_from_args([]).sessionless_timeout == 30


def _guards(node: Any) -> Iterator[dict[str, Any]]:
    """Every RouterGuard component and ProxyGuard resource in a rendered config."""
    if isinstance(node, dict):
        if str(node.get("classname", "")).endswith(("RouterGuard", "ProxyGuard")):
            yield node
        for child in node.values():
            yield from _guards(child)
    elif isinstance(node, list):
        for child in node:
            yield from _guards(child)


@pytest.mark.parametrize("proxies", [0, 2])
def test_the_rendered_router_gives_the_timeout_to_every_guard(tmp_path: Path, proxies: int) -> None:
    flags = ["--sessionless-timeout", "45", "--run-dir", str(tmp_path), "--proxies", str(proxies)]
    rendered = render(config_from_args(flags)) / "config.yaml"
    guards = list(_guards(yaml.safe_load(rendered.read_text())))
    assert len(guards) == 1 + proxies  # the router's, and one per proxy worker
    assert all(guard["extra"]["sessionless_timeout"] == 45 for guard in guards)


class _Closable(_Connection):
    def __init__(self, fails: bool) -> None:
        super().__init__(None)
        self.fails, self.dropped = fails, False
        self.closed_with: tuple[int, str] | None = None

    def sendClose(self, code: int, reason: str) -> None:
        if self.fails:
            raise RuntimeError("transport gone")
        self.closed_with = (code, reason)

    def dropConnection(self, abort: bool) -> None:
        self.dropped = abort


def test_a_connection_that_cannot_be_closed_is_dropped_and_the_sweep_goes_on() -> None:
    now = [0.0]
    guard = SessionlessGuard(5.0, clock=lambda: now[0])
    broken, fine = _Closable(fails=True), _Closable(fails=False)
    guard.opened(broken)
    guard.opened(fine)
    now[0] = 5.0
    assert guard.sweep() == 2
    assert broken.dropped and fine.closed_with == (1000, close_reason(5.0))
    assert guard.closed == 2
