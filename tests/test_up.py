"""`sandbar up`: the whole stack from one command, supervised, and gone without a trace on SIGTERM."""

from __future__ import annotations

import os
import signal
import time

import psutil
import requests

from tests.support.procs import BIN, Proc, base_env, free_port, wait_until
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


def test_up_runs_supervises_and_stops_everything(tmp_path):
    ports = {name: free_port() for name in ("router", "backend", "api", "bridge")}
    argv = [
        str(BIN / "sandbar"),
        "up",
        "--router-port",
        str(ports["router"]),
        "--backend-port",
        str(ports["backend"]),
        "--api-port",
        str(ports["api"]),
        "--bridge-port",
        str(ports["bridge"]),
        "--run-dir",
        str(tmp_path / "run"),
    ]
    up = Proc("up", argv, base_env(SANDBAR_DEV="1"), tmp_path)
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
