"""Start real Sandbar processes on free ports, read their logs, stop them for good.

Used by the project's tests and by the pytest plugin (sandbar/testing.py) for a project's own."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Self

import requests
import zmq

from bridge.curve import connect_as_client
from bridge.keys import SENDER_KEYS_VAR, ensure_stack_keys, load_sender_keys
from sandbar.paths import ROOT
from topics.registry import APP_VAR

BIN = Path(sys.executable).parent
SECRET = "test-backend-secret-0123456789abcdef"
TOKEN_SECRET = "test-token-secret-0123456789abcdef"

#: the variables session_keys sets: the bridge's keys, the API's, this process's senders'
KEY_VARS = ("SANDBAR_BRIDGE_CURVE_KEYS", "SANDBAR_API_BRIDGE_KEYS", SENDER_KEYS_VAR)


@functools.cache
def session_keys() -> dict[str, str]:
    """The session's key files, as KEY_VARS → path, made on first use (not on import: this
    module is the pytest plugin's, loaded in any project that installs Sandbar).

    Every test bridge admits only CURVE senders, as in production: one set of key files for
    the session, handed to the services (base_env) and to this process's EventSenders (set
    in ``os.environ``), removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="sandbar-test-keys-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    bridge_keys, sender_keys = ensure_stack_keys(folder)
    env = dict(zip(KEY_VARS, (str(bridge_keys), str(sender_keys), str(sender_keys)), strict=True))
    os.environ.update(env)
    return env


def sender_keys() -> Path:
    """The session's sender key file (``api.keys``)."""
    return Path(session_keys()[SENDER_KEYS_VAR])


def dealer(
    endpoint: str,
    keys: Path | Literal["session"] | None = "session",
    routing_id: bytes | None = None,
) -> zmq.Socket[bytes]:
    """A raw DEALER connected to a bridge, with the session's sender keys by default, others
    given, or None: without (the NULL mechanism)."""
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 1000)
    if routing_id is not None:
        sock.setsockopt(zmq.ROUTING_ID, routing_id)
    if keys == "session":
        keys = sender_keys()
    if keys is not None:
        sender = load_sender_keys(keys)
        connect_as_client(sock, sender.server_key, sender.secret_key)
    sock.connect(endpoint)
    return sock


_handed_out: set[int] = set()


#: ports are shared between pytest-xdist workers in blocks of this many
PORT_BLOCK = 8
#: test servers listen below the system's ephemeral range (see _ephemeral_start)
LOWEST_PORT = 10000


def free_port() -> int:
    """A free loopback port, never one this process handed out before, and under
    pytest-xdist one of this worker's share only, so two workers' servers cannot race for
    the same port between its choice and its bind."""
    return free_ports(1)


def free_ports(count: int) -> int:
    """The first of ``count`` adjacent free ports (a stack that serves on ``base + i``).

    Chosen below the ephemeral range, where no outgoing connection can take one between
    this choice and the server's bind (bind(0) would hand out ports that connect() uses
    too), and in this worker's share: blocks of PORT_BLOCK, ``port // PORT_BLOCK % workers
    == worker number``, a run never crossing a block."""
    if not 1 <= count <= PORT_BLOCK:
        raise ValueError(f"free_ports: count {count} is not in 1-{PORT_BLOCK}")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    blocks = range(LOWEST_PORT // PORT_BLOCK, _ephemeral_start() // PORT_BLOCK)
    mine = [block for block in blocks if block % workers == worker % workers]
    for _ in range(10_000):
        base = random.choice(mine) * PORT_BLOCK + random.randrange(PORT_BLOCK - count + 1)
        run = range(base, base + count)
        if not _handed_out.intersection(run) and all(_bindable(port) for port in run):
            _handed_out.update(run)
            return base
    raise OSError(f"no {count} adjacent free loopback ports below the ephemeral range")


@functools.cache
def _ephemeral_start() -> int:
    """The first port the system hands to outgoing connections (Linux default 32768)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return max(low, LOWEST_PORT + 64 * PORT_BLOCK)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_until(
    check: Callable[[], object], timeout: float, what: str, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout}s (last error: {last!r})")


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBAR_")}
    env.update(
        SANDBAR_BACKEND_SECRET=SECRET,
        SANDBAR_API_TOKEN_SECRET=TOKEN_SECRET,
        PYTHONUNBUFFERED="1",
    )
    env.update(session_keys())
    env.update(extra)
    return env


class Proc:
    """A child process in its own process group, its output in a log file."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log_dir: Path,
        cwd: Path | None = None,
    ) -> None:
        self.name, self.argv, self.env, self.cwd = name, argv, env, cwd
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the group, wait, then SIGKILL whatever is left; returns the exit code."""
        if self.process is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        return code


@contextlib.contextmanager
def _stopped_on_failure(proc: Proc) -> Iterator[None]:
    """A process that never became ready is stopped, so no fixture leaks it."""
    try:
        yield
    except BaseException:
        proc.stop()
        raise


class _Stoppable:
    """``with X(...).start() as x:`` stops ``x`` on the way out."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Router(_Stoppable):
    """The real Crossbar router, rendered from .crossbar/config.yaml onto free ports;
    ``proxies``: that many proxy workers in front of it (sandbar/router_proxies.py)."""

    def __init__(
        self,
        workdir: Path,
        proxies: int = 0,
        log_level: str = "warn",
        *,
        metrics_port: int = 0,
        options: Sequence[str] = (),
    ) -> None:
        """``metrics_port``: the worker serves /metrics there (0: off); ``options``: more
        ``sandbar-router`` flags."""
        self.port, self.backend_port = free_port(), free_port()
        self.proxies = proxies
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.proc = Proc(
            "router",
            [
                str(BIN / "sandbar-router"),
                "--port",
                str(self.port),
                "--backend-port",
                str(self.backend_port),
                "--run-dir",
                str(workdir / "router"),
                "--metrics-port",
                str(metrics_port),
                "--proxies",
                str(proxies),
                *options,
                "--log-level",  # last: tests that need the router's info lines change it
                log_level,
            ],
            base_env(),
            workdir,
        )

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def backend_url(self) -> str:
        return f"rs://127.0.0.1:{self.backend_port}"

    def start(self, timeout: float = 30.0) -> Router:
        self.proc.start()
        with _stopped_on_failure(self.proc):
            wait_until(self._ready, timeout, "router ready")
        return self

    def _ready(self) -> bool:
        if not self.proc.running():
            raise RuntimeError(f"router exited:\n{self.proc.output()[-3000:]}")
        listening = http_ok(f"http://127.0.0.1:{self.port}/") and _port_open(self.backend_port)
        # the proxies start one after the other: ready when each one listens
        return listening and (not self.proxies or listeners(self.port) == self.proxies)

    def stop(self) -> None:
        self.proc.stop()


def listeners(port: int) -> int:
    """How many sockets listen on this TCP port (IPv4), from /proc/net/tcp."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    local = f":{port:04X}"
    return sum(1 for row in rows if row.split()[1].endswith(local) and row.split()[3] == "0A")


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


SHIPPED_BRIDGE_CONFIG = ROOT / "config" / "bridge.yaml"


class Bridge(_Stoppable):
    """The real bridge service, with the shipped config (or a given one) on a free port."""

    def __init__(
        self,
        workdir: Path,
        router: Router,
        config: Mapping[str, Any] | None = None,
        router_url: str | None = None,
        *,
        path: Path = SHIPPED_BRIDGE_CONFIG,
        topics_app: str | None = None,
        metrics_port: int = 0,
    ) -> None:
        """``config``: a mapping written as the YAML; else the file at ``path``. ``topics_app``:
        the app whose topics the routes must reach (default: the shipped examples).
        ``metrics_port``: serve /metrics there (0: off)."""
        self.router = router
        self.port = free_port()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        if config is not None:
            import yaml

            path = workdir / "bridge.yaml"
            path.write_text(yaml.safe_dump(_with_keys(config)))
        env = base_env(
            SANDBAR_BRIDGE_BIND=self.endpoint,
            SANDBAR_ROUTER_BACKEND_URL=router_url or router.backend_url,
            **({APP_VAR: topics_app} if topics_app else {}),
        )
        argv = [str(BIN / "sandbar-bridge"), str(path), "--metrics-port", str(metrics_port)]
        self.proc = Proc("bridge", argv, env, workdir)
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"

    def stats(self) -> dict[str, Any]:
        from sandbar.peers import backend_call

        return dict(backend_call(self.router.backend_url, "sandbar.bridge.stats"))

    def start(self, timeout: float = 20.0) -> Bridge:
        self.proc.start()
        with _stopped_on_failure(self.proc):
            wait_until(lambda: self.stats()["connected"], timeout, "bridge connected", interval=0.1)
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash would: no goodbye, nothing flushed."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.stop()

    def stop(self) -> None:
        self.proc.stop()


def _with_keys(config: Mapping[str, Any]) -> dict[str, Any]:
    """A test's bridge config, given the session's keys unless it chose its own."""
    zmq_section = dict(config.get("zmq") or {})
    chosen = {"curve_keys", "curve_secret_key", "insecure_allow_unauthenticated"}
    if not chosen & set(zmq_section):
        zmq_section["curve_keys"] = "${SANDBAR_BRIDGE_CURVE_KEYS}"
    return {**config, "zmq": zmq_section}


class Api(_Stoppable):
    """The real API under gunicorn (several workers), SQLite in the test's folder."""

    def __init__(
        self,
        workdir: Path,
        bridge_endpoint: str,
        workers: int = 2,
        port: int | None = None,
        database_url: str | None = None,
        **settings: str,
    ) -> None:
        """``settings`` are extra ApiConfig fields, e.g. ``delivery="fire_and_forget"``;
        ``database_url``: SQLite in ``workdir`` unless given."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database = workdir / "api.db"
        self.database_url = database_url or f"sqlite:///{self.database}"
        env = base_env(
            SANDBAR_API_PORT=str(self.port),
            SANDBAR_API_WORKERS=str(workers),
            SANDBAR_API_BRIDGE_ENDPOINT=bridge_endpoint,
            SANDBAR_API_DATABASE_URL=self.database_url,
            **{f"SANDBAR_API_{key.upper()}": value for key, value in settings.items()},
        )
        self.proc = Proc("api", [str(BIN / "sandbar-api")], env, workdir)

    def start(self, timeout: float = 20.0) -> Api:
        self.proc.start()
        with _stopped_on_failure(self.proc):
            wait_until(lambda: http_ok(f"{self.url}/healthz"), timeout, "api ready")
        return self

    def add_user(
        self, username: str, password: str = "correct horse battery", role: str = "user"
    ) -> None:
        """Create an account with the real CLI (``sandbar-api users add``)."""
        subprocess.run(
            [
                str(BIN / "sandbar-api"),
                "users",
                "add",
                username,
                "--role",
                role,
                "--password-stdin",
            ],
            input=password + "\n",
            env=self.proc.env,
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def sign_in(self, username: str, password: str = "correct horse battery") -> str:
        response = requests.post(
            f"{self.url}/auth/token", json={"username": username, "password": password}, timeout=10
        )
        response.raise_for_status()
        return str(response.json()["token"])

    @functools.cached_property
    def auth(self) -> dict[str, str]:
        """Headers of a signed-in writer (created on first use)."""
        self.add_user("writer")
        return {"Authorization": f"Bearer {self.sign_in('writer')}"}

    def stop(self) -> None:
        self.proc.stop()


class Topics(_Stoppable):
    """A real topics service (a replica) serving ``app``, reconnecting fast for tests."""

    def __init__(
        self,
        workdir: Path,
        router: Router,
        app: str = "tests.topics_app:topics",
        name: str = "topics",
        api_url: str = "http://127.0.0.1:9",
        metrics_port: int = 0,
    ) -> None:
        """``api_url``: the API that vouches for tokens (by default nothing listens there).
        ``metrics_port``: serve /metrics there (0: off)."""
        self.router = router
        env = base_env(PYTHONPATH=str(ROOT))
        argv = [
            str(BIN / "sandbar-topics"),
            "--app",
            app,
            "--router-url",
            router.backend_url,
            "--retry-max-delay",
            "0.5",
            "--api-url",
            api_url,
            "--metrics-port",
            str(metrics_port),
        ]
        self.proc = Proc(name, argv, env, workdir)
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self._joins_seen = 0

    def joins(self) -> int:
        return self.proc.output().count("serving ")

    def start(self, timeout: float = 20.0) -> Topics:
        before = self.joins()
        if not self.proc.running():
            self.proc.start()
        with _stopped_on_failure(self.proc):
            wait_until(lambda: self.joins() > before, timeout, f"{self.proc.name} joined", 0.05)
        return self

    def wait_rejoined(self, timeout: float = 20.0) -> None:
        before = self.joins()
        wait_until(lambda: self.joins() > before, timeout, f"{self.proc.name} rejoined", 0.05)

    def stop(self) -> None:
        self.proc.stop()
