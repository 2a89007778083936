"""A throwaway PostgreSQL server: Debian's binaries, a temporary folder, a free port.
The tests (tests/support/postgres.py) and the benchmarks (bench/paths.py) start it.

PostgreSQL refuses to run as root, and sessions and CI run as root: then initdb and
pg_ctl run as the ``postgres`` user (Debian's package creates it) through ``runuser``,
in a folder that user owns.
"""

from __future__ import annotations

import contextlib
import getpass
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from sandbar.procs import free_port

PASSWORD = "sandbar-test-password"
_serial = itertools.count(1)


def _bin_dir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        raise RuntimeError(
            "PostgreSQL's server binaries are missing: `make test` and `make bench` install "
            "Debian's postgresql (or: apt-get install postgresql)"
        )
    return found[-1].parent


class PostgresServer:
    """initdb + pg_ctl in a temporary folder; ``stop()`` and ``start()`` restart it on the
    same port and data (the database-restart test uses that)."""

    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="sandbar-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.user = "postgres" if os.geteuid() == 0 else getpass.getuser()
        if os.geteuid() == 0:
            owner = pwd.getpwnam(self.user)
            os.chown(self.root, owner.pw_uid, owner.pw_gid)

    def _run(self, *argv: str, timeout: float = 60) -> None:
        prefix = ["runuser", "-u", self.user, "--"] if os.geteuid() == 0 else []
        result = subprocess.run(
            [*prefix, *argv], capture_output=True, text=True, timeout=timeout, cwd=self.root
        )
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed: {result.stderr or result.stdout}\n{log}")

    def init(self) -> PostgresServer:
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, self.user)
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--pwfile",
            str(pwfile),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",  # logins over TCP need the password, as in production
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        return self

    def start(self, durable: bool = False) -> PostgresServer:
        """``durable``: fsync on, as in production (the benchmarks); the tests run without
        (power loss is not what they are about)."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            f"{'' if durable else '-F '}-c max_connections=200 -c shared_buffers=32MB"
        )
        self._run(
            str(self.bin / "pg_ctl"), "start", "-D", str(self.data), "-l", str(self.log),
            "-o", options, "-w", "-t", "60",
        )  # fmt: skip
        return self

    def stop(self, mode: str = "fast") -> None:
        """``fast``: sessions are ended, as when an operator restarts the server."""
        self._run(str(self.bin / "pg_ctl"), "stop", "-D", str(self.data), "-m", mode, "-w")

    @property
    def pid(self) -> int:
        """The postmaster's; every backend of the cluster is its child (CPU per process)."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def url(self, database: str = "postgres", password: str = PASSWORD) -> str:
        return f"postgresql+psycopg://postgres:{password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "sandbar_test") -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(_serial)}"
        with psycopg.connect(self._dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres password={PASSWORD} dbname=postgres"

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
