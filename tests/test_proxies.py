"""Crossbar proxy workers in front of the router worker (sandbar/router_proxies.py): the
rendered config, and that every way of stopping still leaves nothing behind."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import psutil
import pytest
import requests
import yaml

from sandbar.config import ConfigError
from sandbar.router import RouterConfig, config_from_args, render
from sandbar.router_proxies import MAX_SOCKET_PATH
from tests.support.procs import Proc, Router, base_env, wait_until
from tests.support.wamp import Subscriber
from tests.test_up import _assert_all_gone, _ports, _reaped, _started, _up_argv


def _rendered(tmp_path: Path, proxies: int) -> dict:
    config = RouterConfig(proxies=proxies, run_dir=tmp_path / "router", port=18080)
    return yaml.safe_load((render(config) / "config.yaml").read_text())


def test_proxies_share_the_port_and_reach_the_router_on_a_private_unix_socket(tmp_path):
    doc = _rendered(tmp_path, 3)
    router, *proxies = doc["workers"]
    assert [w["type"] for w in proxies] == ["proxy"] * 3
    assert [t["type"] for t in router["transports"]] == ["rawsocket", "rawsocket"]
    for proxy in proxies:
        [web] = proxy["transports"]
        assert web["endpoint"] == {
            "type": "tcp",
            "interface": "127.0.0.1",
            "port": 18080,
            "shared": True,
        }
        assert web["paths"]["ws"]["options"]["max_message_size"] == 256 * 1024  # browser cap
        assert web["paths"]["ws"]["options"]["allowed_origins"]
        roles = set(proxy["routes"]["sandbar"])
        assert roles == {"anonymous", "user", "staff", "authenticator"}  # never "backend"
    # anonymous-proxy (the router trusts any identity it is told) only on a Unix socket
    listeners = [
        t
        for w in doc["workers"]
        for t in w.get("transports", [])
        if "anonymous-proxy" in t.get("auth", {})
    ]
    connections = [c for p in proxies for c in p["connections"].values()]
    for each in [*listeners, *(c["transport"] for c in connections)]:
        assert each["endpoint"]["type"] == "unix"
        assert each["endpoint"]["path"] == str((tmp_path / "router" / "proxies.sock").resolve())
    assert (tmp_path / "router").stat().st_mode & 0o077 == 0  # nobody else can connect


def test_no_proxies_renders_the_template_as_it_is(tmp_path):
    doc = _rendered(tmp_path, 0)
    assert [w["type"] for w in doc["workers"]] == ["router"]
    assert "shared" not in doc["workers"][0]["transports"][0]["endpoint"]


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--proxies", "-1"], {}, "greater than or equal to 0"),
        ([], {"SANDBAR_ROUTER_PROXIES": "65"}, "less than or equal to 64"),
    ],
)
def test_a_bad_proxy_count_is_refused_at_load(argv, env, message, monkeypatch):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"proxies.*{message}"):
        config_from_args(argv)


def test_a_socket_path_too_long_for_unix_is_refused_naming_the_fix(tmp_path):
    run_dir = tmp_path / ("x" * MAX_SOCKET_PATH)
    with pytest.raises(ConfigError, match=r"longer than 107 bytes.*shorter --run-dir"):
        render(RouterConfig(proxies=2, run_dir=run_dir))


def _workers(router: Router) -> list[psutil.Process]:
    """The crossbar controller's worker processes (router worker and proxies)."""
    return psutil.Process(router.proc.pid).children()


def test_proxy_workers_die_with_a_sigkilled_controller_even_when_stopped(tmp_path):
    """Crossbar's workers leave when the controller's pipe closes, but not while stopped
    (or blocked): each proxy worker has the kernel's parent-death signal too."""
    with Router(tmp_path, proxies=2).start() as router:
        workers = _workers(router)
        assert len(workers) == 3, workers
        for worker in workers:
            worker.send_signal(signal.SIGSTOP)
        os.kill(router.proc.pid, signal.SIGKILL)
        _, alive = psutil.wait_procs(workers, timeout=5)
        assert alive == [], [w.cmdline() for w in alive]


def test_a_sigterm_stops_the_router_and_its_proxies(tmp_path):
    router = Router(tmp_path, proxies=2).start()
    workers = _workers(router)
    started = time.monotonic()
    code = router.proc.stop()  # SIGTERM to its group, as a supervisor stops it
    assert code is not None, "the controller had to be SIGKILLed"  # 1, as without proxies
    assert time.monotonic() - started < 5
    _, alive = psutil.wait_procs(workers, timeout=5)
    assert alive == []


def test_up_with_proxies_serves_through_them_and_nothing_outlives_a_sigkill(tmp_path):
    """`sandbar up --proxies 2`: an article reaches a subscriber through the proxies; then
    every crossbar worker is stopped and `sandbar up` SIGKILLed: all gone within seconds."""
    ports = _ports("router", "backend", "api", "bridge")
    argv = [*_up_argv(ports, tmp_path / "run"), "--proxies", "2", "--metrics-port", "0"]
    up = Proc("up", argv, base_env(SANDBAR_DEV="1", HOME=str(tmp_path)), tmp_path)
    pids: list[int] = []
    with _reaped(up, pids):
        pids += _started(up)
        listener = Subscriber(f"ws://127.0.0.1:{ports['router']}/ws", ["articles"])
        try:
            listener.start()
            api = f"http://127.0.0.1:{ports['api']}"
            token = requests.post(
                f"{api}/auth/token",
                json={"username": "demo", "password": "sandbar-demo"},
                timeout=5,
            ).json()["token"]
            created = requests.post(
                f"{api}/articles",
                json={"title": "proxied", "body": "b"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=5,
            )
            assert created.status_code == 201
            [event] = listener.wait_for(1, timeout=5)
            assert event.args[0] == created.json()
        finally:
            listener.close()
        root = psutil.Process(up.pid)
        [controller] = [p for p in root.children() if "crossbar" in " ".join(p.cmdline())]
        wait_until(lambda: len(controller.children()) == 3, 10, "router worker and 2 proxies")
        pids[:] = [p.pid for p in root.children(recursive=True)]
        for worker in controller.children():
            worker.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        os.kill(up.pid, signal.SIGKILL)
        _assert_all_gone(up, pids, ports, 5)
        print(f"\nall gone {time.monotonic() - started:.1f}s after the SIGKILL")


@pytest.mark.parametrize("router", [2], indirect=True, ids=["proxies2"])
def test_a_burst_of_browsers_through_proxies_all_get_in(router: Router) -> None:
    """Each browser session through a proxy opens its own connection to the router, so a
    burst of browsers is a burst of connections to the router's proxy listener: 300 at once
    must all get in (Twisted's default listen queue of 50 refused them: "Frontend connection
    accept failed")."""
    from urllib.parse import urlsplit

    from bench.light import LightSubscriber

    url = urlsplit(router.ws_url)
    host, port = str(url.hostname), int(url.port or 80)

    async def one() -> LightSubscriber:
        loop = asyncio.get_running_loop()
        _, session = await loop.create_connection(
            lambda: LightSubscriber(
                host, port, url.path, "articles", lambda *a: None, lambda why: None
            ),
            host,
            port,
        )
        await asyncio.wait_for(session.ready, 60)
        return session

    async def burst() -> list[BaseException | LightSubscriber]:
        results = await asyncio.gather(*(one() for _ in range(300)), return_exceptions=True)
        for session in results:
            if isinstance(session, LightSubscriber):
                session.leave()
        await asyncio.sleep(0.5)
        return results

    failed = [r for r in asyncio.run(burst()) if isinstance(r, BaseException)]
    assert not failed, f"{len(failed)} of 300 refused, e.g. {failed[0]!r}"
