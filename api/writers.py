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

from sqlalchemy import Connection, Engine

log = logging.getLogger("sandbar.api.db")

CHECKPOINT_INTERVAL = 0.5  # seconds
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
        self._fd: int | None = None  # flock belongs to an open file: each process opens its own
        self._checkpointing = False

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        with self._mutex:
            if self._fd is None:
                self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
                self._start_checkpoints()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _start_checkpoints(self) -> None:
        if not self._checkpointing:
            self._checkpointing = True
            threading.Thread(
                target=self._checkpoints, name="sqlite-checkpoint", daemon=True
            ).start()

    def _checkpoints(self) -> None:
        while (engine := self.engine()) is not None:
            try:
                with engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            except Exception:  # the backstop still checkpoints; try again later
                log.exception("background WAL checkpoint failed")
            del engine
            time.sleep(CHECKPOINT_INTERVAL)


_writers: weakref.WeakKeyDictionary[Engine, SqliteWriters] = weakref.WeakKeyDictionary()


def _after_fork() -> None:
    for writers in list(_writers.values()):
        writers.reset()


os.register_at_fork(after_in_child=_after_fork)


def take_turns(engine: Engine, database_file: Path) -> None:
    """Make :func:`begin_write` on ``engine`` take turns on a lock file beside
    ``database_file``, and checkpoint in the background."""
    _writers[engine] = SqliteWriters(engine, database_file)


@contextlib.contextmanager
def begin_write(engine: Engine) -> Iterator[Connection]:
    """``engine.begin()`` for a transaction that writes, in its turn (on SQLite files)."""
    writers = _writers.get(engine)
    with (
        writers.turn() if writers is not None else contextlib.nullcontext(),
        engine.begin() as conn,
    ):
        yield conn
