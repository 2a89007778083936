"""`sandbar up`: the whole stack from one command, supervised, and gone without a trace on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import psutil
import requests

from sandbar.health import http_ready
from sandbar.supervisor import HURRIED_GRACE, LINE_LIMIT, Service, Supervisor
from tests.support.procs import BIN, ROOT, Proc, base_env, free_port, wait_until
from tests.support.wamp import Subscriber


def _service_pid(root: psutil.Process, marker: str) -> int:
    for child in root.children(recursive=True):
        try:
            if any(marker in part for part in child.cmdline()):
                return child.pid
        except psutil.NoSuchProcess:
            continue
    raise LookupError(marker)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _runs(process: psutil.Process, *markers: str) -> bool:
    return any(marker in part for part in process.cmdline() for marker in markers)


def _ports(*names: str) -> dict[str, int]:
    return {name: free_port() for name in names}


def _options(ports: dict[str, int], run_dir: Path) -> list[str]:
    ports_given = [arg for name, port in ports.items() for arg in (f"--{name}-port", str(port))]
    return [*ports_given, "--run-dir", str(run_dir)]


def _up_argv(ports: dict[str, int], run_dir: Path) -> list[str]:
    """``sandbar up`` on free ports, with its own run directory."""
    return [str(BIN / "sandbar"), "up", *_options(ports, run_dir)]


def test_up_runs_supervises_and_stops_everything(tmp_path):
    ports = _ports("router", "backend", "api", "bridge")
    up = Proc("up", _up_argv(ports, tmp_path / "run"), base_env(SANDBAR_DEV="1"), tmp_path)
    started = time.monotonic()
    up.start()
    subscriber = None
    try:
        wait_until(lambda: "Sandbar is ready" in up.output(), 60, "sandbar up ready", 0.1)
        print(f"\nsandbar up ready after {time.monotonic() - started:.1f}s")
        api = f"http://127.0.0.1:{ports['api']}"
        assert f"  api        {api}/articles" in up.output()

        subscriber = listener = Subscriber(f"ws://127.0.0.1:{ports['router']}/ws", ["articles"])
        listener.start()
        assert "  sign in    demo / sandbar-demo" in up.output()
        token = requests.post(
            f"{api}/auth/token", timeout=5, json={"username": "demo", "password": "sandbar-demo"}
        ).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        created = requests.post(
            f"{api}/articles", json={"title": "up", "body": "b"}, headers=auth, timeout=5
        )
        assert created.status_code == 201
        [event] = subscriber.wait_for(1, timeout=5)
        assert event.args[0] == created.json()

        root = psutil.Process(up.pid)
        old_bridge = _service_pid(root, "sandbar-bridge")
        os.kill(old_bridge, signal.SIGKILL)
        wait_until(
            lambda: "bridge exited with code -9; restart #1" in up.output(), 10, "crash noticed"
        )
        wait_until(lambda: _service_pid(root, "sandbar-bridge") != old_bridge, 10, "restarted")
        assert all(name in up.output() for name in ("router |", "topics |", "bridge |", "api    |"))

        def delivered_again() -> bool:
            requests.post(
                f"{api}/articles", json={"title": "again", "body": "b"}, headers=auth, timeout=5
            )
            return any(e.args[0]["title"] == "again" for e in listener.snapshot())

        wait_until(delivered_again, 20, "delivery through the restarted bridge", interval=0.5)

        descendants = [p.pid for p in root.children(recursive=True)]
        assert len(descendants) >= 6  # router controller+worker, topics, bridge, gunicorn+workers
        subscriber.close()
        subscriber = None
        os.kill(up.pid, signal.SIGTERM)
        assert up.process is not None
        assert up.process.wait(30) == 0
        wait_until(lambda: not any(_alive(pid) for pid in descendants), 10, "no process left")
        assert "all services stopped" in up.output()
    finally:
        if subscriber is not None:
            subscriber.close()
        if up.running():  # services live in their own process groups: reap them too
            for child in psutil.Process(up.pid).children(recursive=True):
                child.kill()
        up.stop()


# -- every way of stopping leaves nothing behind (issue 12) -------------------------------

STOP_TIMEOUT = 10.0  # the supervisor's grace before SIGKILL
CHEAP = ("router", "backend", "api", "bridge")  # tests/support/stack.py: no router runs


def _cheap_argv(ports: dict[str, int], run_dir: Path) -> list[str]:
    return [str(BIN / "python"), "-m", "tests.support.stack", *_options(ports, run_dir)]


def _stack_env() -> dict[str, str]:
    env = base_env(SANDBAR_DEV="1", PYTHONPATH=str(ROOT))
    for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):  # under `make test`: not a sub-make
        env.pop(name, None)
    return env


def _under_make(tmp_path: Path, argv: list[str], name: str) -> Proc:
    """``setsid make up``, the recipe being ``argv``: make forwards a SIGTERM to its child."""
    makefile = tmp_path / f"{name}.mk"
    makefile.write_text(f"up:\n\t{' '.join(argv)}\n")  # no shell: make execs the command
    return Proc(name, ["make", "-s", "-f", str(makefile), "up"], _stack_env(), tmp_path)


def _started(proc: Proc, timeout: float = 60) -> list[int]:
    """Start ``proc``, wait until its stack is ready; every process under it, supervisor first."""
    proc.start()
    wait_until(lambda: "Sandbar is ready" in proc.output(), timeout, f"{proc.name} ready", 0.05)
    return [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]


def _left(pids: list[int]) -> list[str]:
    left = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            if _alive(pid):
                left.append(f"{pid} {' '.join(psutil.Process(pid).cmdline())[:100]}")
    return left


def _ports_free(ports: dict[str, int]) -> bool:
    """Each port can be listened on again, as the next ``make up`` would (SO_REUSEADDR)."""
    for port in ports.values():
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
                sock.listen()
            except OSError:
                return False
    return True


def _assert_all_gone(proc: Proc, pids: list[int], ports: dict[str, int], within: float) -> None:
    """Nothing of the stack is left and its ports are free within ``within`` seconds."""
    try:
        wait_until(lambda: not _left(pids), within, "every process of the stack gone")
    except TimeoutError:
        raise AssertionError(f"left running: {_left(pids)}\n{proc.output()[-3000:]}") from None
    wait_until(lambda: _ports_free(ports), 2, "ports free")


def _stopped(proc: Proc, pids: list[int], ports: dict[str, int]) -> None:
    """The supervisor stopped every service itself (rather than dying), within its timeout."""
    _assert_all_gone(proc, pids, ports, STOP_TIMEOUT)
    assert proc.process is not None
    proc.process.wait(5)
    assert "all services stopped" in proc.output(), proc.output()[-3000:]


@contextlib.contextmanager
def _reaped(pids: list[int]) -> Iterator[None]:
    """Whatever a failed test leaves behind is killed (services have their own groups)."""
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()


@contextlib.contextmanager
def _busy_machine() -> Iterator[None]:
    """A CPU burner per core: a stop on a busy machine is when signals race."""
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 2)
    ]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def test_group_sigterm_under_make_stops_everything_ten_times(tmp_path):
    """The issue's reproduction: `setsid make up`, SIGTERM to make's whole process group,
    so the supervisor gets the group's SIGTERM and make's forwarded one milliseconds
    apart; on a busy machine the second used to kill it half-way, orphaning services.
    Ten rounds, every stop on a busy machine. The cheap stack (topics, bridge, API with
    its workers) runs the same supervisor and signal code in a second instead of five."""
    durations = []
    for round_ in range(10):
        ports = _ports(*CHEAP)
        make = _under_make(tmp_path, _cheap_argv(ports, tmp_path / f"run{round_}"), f"make{round_}")
        pids: list[int] = []
        with _reaped(pids):
            pids += _started(make)
            assert len(pids) >= 6, _left(pids)  # supervisor, topics, bridge, gunicorn + 2 workers
            with _busy_machine():
                started = time.monotonic()
                os.killpg(make.pid, signal.SIGTERM)
                _stopped(make, pids, ports)
                durations.append(time.monotonic() - started)
    print(f"\nten group stops on a busy machine: longest {max(durations):.1f}s")


def test_group_sigterm_under_make_with_clients_stops_the_whole_stack(tmp_path):
    """The whole stack (crossbar controller and worker, gunicorn master and workers) under
    `make up`, with a WebSocket client and a Chromium page connected, stopped on a busy
    machine by SIGTERM to make's group: nothing left, every port free."""
    from tests.support.browser import Pages, launch, missing_prerequisite

    assert missing_prerequisite() is None, missing_prerequisite()
    ports = _ports("router", "backend", "api", "bridge")
    make = _under_make(tmp_path, _up_argv(ports, tmp_path / "run"), "make")
    pids: list[int] = []
    with _reaped(pids), launch() as browser:
        pids += _started(make)
        subscriber = Subscriber(f"ws://127.0.0.1:{ports['router']}/ws", ["articles"])
        subscriber.start()
        pages = Pages(browser).point_at(ports["router"], f"http://127.0.0.1:{ports['api']}")
        page = pages.open()
        page.wait_for_selector("#connection[data-state=open]", timeout=15_000)
        try:
            with _busy_machine():
                os.killpg(make.pid, signal.SIGTERM)
                _stopped(make, pids, ports)
        finally:
            subscriber.close()
            pages.close()


def _signal_twice(tmp_path: Path, signum: int, pause: float | None) -> Proc:
    """The cheap stack, signalled twice; ``pause=None``: again once the stop is under way."""
    ports = _ports(*CHEAP)
    name = signal.Signals(signum).name
    up = Proc(name, _cheap_argv(ports, tmp_path / name), _stack_env(), tmp_path)
    pids: list[int] = []
    with _reaped(pids):
        pids += _started(up)
        os.kill(up.pid, signum)
        if pause is None:
            wait_until(lambda: f"received {name}" in up.output(), 5, "stop under way")
        else:
            time.sleep(pause)
        os.kill(up.pid, signum)
        _stopped(up, pids, ports)
    assert up.process is not None and up.process.returncode == 0
    return up


def test_two_sigterms_1ms_apart_stop_everything(tmp_path):
    up = _signal_twice(tmp_path, signal.SIGTERM, 0.001)
    assert "killing what is left" not in up.output()  # the same request: a graceful stop


def test_a_double_ctrl_c_hurries_the_stop_but_never_abandons_it(tmp_path):
    up = _signal_twice(tmp_path, signal.SIGINT, None)
    assert "received SIGINT again: killing what is left in 1s" in up.output()


def test_services_die_with_a_sigkilled_supervisor(tmp_path):
    """`sandbar up` SIGKILLed: every service is gone within seconds, by the kernel's
    parent-death signal. The crossbar worker and a gunicorn worker are SIGSTOPped first,
    so neither can notice on its own (crossbar's closed pipe, gunicorn's ppid check)."""
    ports = _ports("router", "backend", "api", "bridge")
    up = Proc("up", _up_argv(ports, tmp_path / "run"), _stack_env(), tmp_path)
    pids: list[int] = []
    with _reaped(pids):
        pids += _started(up)
        leaders = psutil.Process(up.pid).children()
        workers = [w for p in leaders if _runs(p, "crossbar", "sandbar-api") for w in p.children()]
        assert len(workers) == 3, workers  # the router worker, two gunicorn workers
        for worker in workers:
            worker.send_signal(signal.SIGSTOP)
        os.kill(up.pid, signal.SIGKILL)
        _assert_all_gone(up, pids, ports, 5)


# -- the supervisor itself, in this process, with real child processes ----------------------


def _supervise(
    supervisor: Supervisor, until: Callable[[], Awaitable[bool]], timeout: float
) -> None:
    """Run ``supervisor`` until ``until()`` holds (or ``timeout``), then stop it."""

    async def main() -> None:
        stop = asyncio.Event()
        running = asyncio.ensure_future(supervisor.run(stop, ready_timeout=timeout))
        deadline = time.monotonic() + timeout
        try:
            while not await until():
                assert not running.done(), "the supervisor ended by itself"
                assert time.monotonic() < deadline, f"not reached within {timeout}s"
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await running

    asyncio.run(main())


def test_the_log_relay_survives_a_200_kb_line(capsys):
    """A line over asyncio's 64 KiB ``readline`` limit used to end the relay; the service
    then blocked on its full pipe for good (issue 12, M1). It is shown cut, and what
    follows still arrives."""
    code = "import time; print('x' * 200_000); print('after the long line', flush=True); time.sleep(60)"
    supervisor = Supervisor([Service("chatty", [sys.executable, "-c", code])])
    shown: list[str] = []

    async def relayed() -> bool:
        shown.append(capsys.readouterr().out)
        return "chatty | after the long line\n" in "".join(shown)

    _supervise(supervisor, relayed, 20)
    cut = 200_000 - LINE_LIMIT
    assert f"chatty | {'x' * LINE_LIMIT} [... {cut} more bytes]\n" in "".join(shown)


def test_a_service_that_stays_unhealthy_is_restarted(tmp_path, caplog):
    """A hung service (here SIGSTOPped: alive, its port open, never answering) does not
    exit, so only its health check shows it; it is restarted like a crashed one."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    argv = [sys.executable, "-m", "http.server", str(port), "-b", "127.0.0.1", "-d", str(tmp_path)]
    web = Service("web", argv, ready=lambda: http_ready(url), restart_delay=0.1)
    supervisor = Supervisor([web], stop_timeout=1, health_interval=0.2, unhealthy_after=1)
    hung: list[int] = []
    caplog.set_level(logging.INFO, "sandbar.up")

    async def restarted() -> bool:
        if web.process is None:
            return False
        if not hung:
            if "web is ready" not in caplog.text:  # the health watch begins
                return False
            hung.append(web.process.pid)
            os.kill(web.process.pid, signal.SIGSTOP)
        return web.process.pid != hung[0] and await _answers(url)

    _supervise(supervisor, restarted, 30)
    assert "web has failed its health check for" in caplog.text
    assert web.restarts == 1


async def _answers(url: str) -> bool:
    with contextlib.suppress(Exception):
        return await http_ready(url)
    return False


def test_a_second_ctrl_c_kills_a_service_that_ignores_sigterm(capsys):
    """The hurried stop: SIGKILL after HURRIED_GRACE instead of the whole stop timeout."""
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ignoring SIGTERM', flush=True); time.sleep(60)"
    )
    stubborn = Service("stubborn", [sys.executable, "-c", code])
    supervisor = Supervisor([stubborn], stop_timeout=30)

    async def main() -> float:
        stop = asyncio.Event()
        running = asyncio.ensure_future(supervisor.run(stop))
        shown = ""
        while "ignoring SIGTERM" not in shown:
            await asyncio.sleep(0.05)
            shown += capsys.readouterr().out
        stop.set()
        started = time.monotonic()
        supervisor.hurry()
        await running
        return time.monotonic() - started

    assert asyncio.run(asyncio.wait_for(main(), 20)) < HURRIED_GRACE + 2
    assert stubborn.process is not None and stubborn.process.returncode == -signal.SIGKILL
