"""SQLite writers take turns on a lock instead of in SQLite's busy handler.

SQLite lets one transaction write at a time. A writer that finds the database locked
sleeps in the busy handler, 1, 2, 5, 10 ms and more between retries, and those sleeps
become the tail latency of every write under contention (the API's request threads,
other gunicorn workers, the outbox relays). Waiting on a lock instead wakes the next
writer as soon as the last one commits: a mutex between the threads of a process, and
``flock`` on a file beside the database between processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Connection, Engine


class WriteTurns:
    """One writer at a time across the threads and processes sharing one database file."""

    def __init__(self, lock_path: Path) -> None:
        self.lock_path = lock_path
        self._fd: int | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the lock state (in a forked child: neither crosses a fork)."""
        self._mutex = threading.Lock()
        self._fd = None  # flock belongs to an open file: each process opens its own

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        with self._mutex:
            if self._fd is None:
                self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)


_turns: weakref.WeakKeyDictionary[Engine, WriteTurns] = weakref.WeakKeyDictionary()


def _after_fork() -> None:
    for turns in list(_turns.values()):
        turns.reset()


os.register_at_fork(after_in_child=_after_fork)


def take_turns(engine: Engine, database_file: Path) -> None:
    """Make :func:`begin_write` on ``engine`` queue on a lock file beside ``database_file``."""
    _turns[engine] = WriteTurns(database_file.with_name(database_file.name + ".writer-lock"))


@contextlib.contextmanager
def begin_write(engine: Engine) -> Iterator[Connection]:
    """``engine.begin()`` for a transaction that writes, in its turn (on SQLite files)."""
    turns = _turns.get(engine)
    with turns.turn() if turns is not None else contextlib.nullcontext(), engine.begin() as conn:
        yield conn
