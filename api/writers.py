"""Keep SQLite's write costs off the requests: writers take turns on a lock, and the
write-ahead log is checkpointed by a background thread.

SQLite lets one transaction write at a time. A writer that finds the database locked
sleeps in the busy handler, 1, 2, 5, 10 ms and more between retries, and those sleeps
become the tail latency of every write under contention (the API's request threads,
other gunicorn workers, the outbox relays). Waiting on a lock instead wakes the next
writer as soon as the last one commits: a mutex between the threads of a process, and
``flock`` on a file beside the database between processes.

SQLite also copies the log back into the database (a checkpoint, with an fsync) inside
whichever commit crosses 1000 log pages: every ~120 articles, a request took ~10 ms
longer. A thread in each writing process checkpoints every ``CHECKPOINT_INTERVAL``
instead, without blocking writers (``PASSIVE``); the automatic checkpoint stays as a
backstop at a larger size.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine

log = logging.getLogger("sandbar.api.db")

CHECKPOINT_INTERVAL = 0.5  # seconds
TURN_TIMEOUT = 5.0  # seconds, like SQLite's busy_timeout
AUTOCHECKPOINT_PAGES = 10_000  # the backstop: ~40 MB of log


class SqliteWriters:
    """One writer at a time across the threads and processes sharing one database file,
    and a background checkpoint in each process that writes."""

    def __init__(self, engine: Engine, database: Path) -> None:
        self.engine = weakref.ref(engine)
        self.lock_path = database.with_name(database.name + ".writer-lock")
        self.reset()

    def reset(self) -> None:
        """Forget the per-process state (in a forked child: none of it crosses a fork)."""
        self._mutex = threading.Lock()
        self._held = threading.local()  # this thread's depth: a nested turn is the same turn
        self._fd: int | None = None  # flock belongs to an open file: each process opens its own
        self._checkpointing = False

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        depth = getattr(self._held, "depth", 0)
        if depth:
            self._held.depth = depth + 1
            try:
                yield
            finally:
                self._held.depth = depth
            return
        deadline = time.monotonic() + TURN_TIMEOUT
        if not self._mutex.acquire(timeout=TURN_TIMEOUT):
            raise WriteTimeout(self.lock_path, "another thread of this process")
        try:
            if self._fd is None:
                self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
                self._start_checkpoints()
            self._flock(self._fd, deadline)
            self._held.depth = 1
            try:
                yield
            finally:
                self._held.depth = 0
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._mutex.release()

    def _flock(self, fd: int, deadline: float) -> None:
        """Take the file lock, polling finely (a blocking flock has no timeout)."""
        pause = 0.0001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise WriteTimeout(self.lock_path, "another process") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.001)

    def _start_checkpoints(self) -> None:
        if not self._checkpointing:
            self._checkpointing = True
            threading.Thread(
                target=_checkpoints, args=(self.engine,), name="sqlite-checkpoint", daemon=True
            ).start()


class WriteTimeout(RuntimeError):
    def __init__(self, lock_path: Path, holder: str) -> None:
        super().__init__(
            f"waited {TURN_TIMEOUT:.0f} s to write to the database: {holder} kept its turn "
            f"({lock_path}); is a process stopped, or a transaction doing slow work inside?"
        )


def _checkpoints(engine_ref: weakref.ref[Engine]) -> None:
    """Checkpoint every CHECKPOINT_INTERVAL for as long as the engine lives."""
    while _checkpoint_once(engine_ref):
        time.sleep(CHECKPOINT_INTERVAL)


def _checkpoint_once(engine_ref: weakref.ref[Engine]) -> bool:
    engine = engine_ref()  # a local of this call only: the engine can be collected between
    if engine is None:
        return False
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
    except Exception:  # the backstop still checkpoints; try again later
        log.exception("background WAL checkpoint failed")
    return True


_writers: weakref.WeakKeyDictionary[Engine, SqliteWriters] = weakref.WeakKeyDictionary()


def _after_fork() -> None:
    for writers in list(_writers.values()):
        writers.reset()


os.register_at_fork(after_in_child=_after_fork)


def take_turns(engine: Engine, database_file: Path) -> None:
    """Make writes on ``engine`` take turns on a lock file beside ``database_file``, and
    checkpoint in the background (api/backends.py's SQLite backend)."""
    _writers[engine] = SqliteWriters(engine, database_file)


def writers_of(engine: Engine) -> SqliteWriters | None:
    return _writers.get(engine)


@contextlib.contextmanager
def file_lock(path: Path, timeout: float = 60.0) -> Iterator[None]:
    """``flock`` on ``path`` (created if missing) for as long as the block runs."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{path} stayed locked for {timeout:.0f} s") from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # releases the lock
