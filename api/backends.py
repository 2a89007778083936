"""What differs between the databases Sandbar runs on, in one object per database, chosen
by the URL's scheme (as encode/broadcaster picks a backend).

* SQLite (the embedded default): one writer at a time, so writers take turns on a lock
  file and the write-ahead log is checkpointed in the background (api/writers.py); a
  migration holds the same file lock.
* PostgreSQL (several API hosts): no host-local lock at all. Row locks order the writers
  (the topic counter, api/outbox.py), relays claim rows with ``FOR UPDATE SKIP LOCKED``
  and a migration holds a transaction-scoped advisory lock.

Everything else is portable SQLAlchemy Core.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import Connection, Engine, Select, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from api.writers import AUTOCHECKPOINT_PAGES, file_lock, take_turns, writers_of
from sandbar.paths import private_dir

URL_HELP = "use sqlite:///path/to/api.db or postgresql://user:password@host:5432/dbname"


class DatabaseConfigError(ValueError):
    """A database URL Sandbar cannot use; the message names the fix."""


class Backend:
    """The interface; see the two implementations below."""

    name: ClassVar[str]

    def make_engine(self, url: URL) -> Engine:
        raise NotImplementedError

    @contextlib.contextmanager
    def begin_write(self, engine: Engine) -> Iterator[Connection]:
        """A transaction that writes."""
        with engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def migrating(self, engine: Engine) -> Iterator[Connection]:
        """A transaction for a schema migration, one process at a time."""
        raise NotImplementedError
        yield  # pragma: no cover

    def skip_locked(self, query: Select[Any]) -> Select[Any]:
        """``query`` skipping rows another transaction has locked (relays' claims)."""
        return query

    def insert(self, table: Table) -> Any:
        """An INSERT with ``on_conflict_do_*``."""
        raise NotImplementedError

    def refused(self, exc: OperationalError) -> bool:
        """Whether a failed connection is for good (a login refused), not for now."""
        return True

    def insert_event(self, conn: Connection, row: dict[str, Any]) -> tuple[int, int]:
        """Number ``row`` (an outbox row, all but ``seq``) next in its topic, insert it, and
        return its seq and the topic's floor (the lowest seq not yet acknowledged, this row
        included), within ``conn``'s transaction: the hot path of every event, so in as few
        statements as the database allows."""
        raise NotImplementedError


class SqliteBackend(Backend):
    """One writer at a time: the turns serialize relays' claims too (no SKIP LOCKED)."""

    name = "sqlite"

    def make_engine(self, url: URL) -> Engine:
        database = url.database
        on_disk = Path(database) if database and database != ":memory:" else None
        if on_disk is not None:  # owner only: SQLite gives -wal and -shm the file's mode
            private_dir(on_disk.parent)
            with contextlib.suppress(FileExistsError):
                os.close(os.open(on_disk, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        engine = create_engine(url)
        event.listen(engine, "connect", _tune_sqlite)
        if on_disk is not None:
            take_turns(engine, on_disk)
        return engine

    @contextlib.contextmanager
    def begin_write(self, engine: Engine) -> Iterator[Connection]:
        writers = writers_of(engine)
        with writers.turn() if writers else contextlib.nullcontext(), engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def migrating(self, engine: Engine) -> Iterator[Connection]:
        # the writers' lock file, without the checkpoint thread (gunicorn's master migrates)
        writers = writers_of(engine)
        lock = file_lock(writers.lock_path) if writers else contextlib.nullcontext()
        with lock, engine.begin() as conn:
            yield conn

    def insert(self, table: Table) -> Any:
        return sqlite.insert(table)

    def insert_event(self, conn: Connection, row: dict[str, Any]) -> tuple[int, int]:
        # One statement: writers take turns, so the counter read in it is the latest; the
        # trigger of migration 0002 moves the counter on (topic_seqs) in the same statement.
        seq, floor = conn.execute(_SQLITE_INSERT_EVENT, row).one()
        return int(seq), int(floor)


class PostgresBackend(Backend):
    """Several hosts: row locks, SKIP LOCKED claims, an advisory lock for migrations."""

    name = "postgresql"
    #: pg_advisory_xact_lock key of schema migrations ("sandbar" in ASCII)
    MIGRATION_LOCK = 0x73616E646261

    def make_engine(self, url: URL) -> Engine:
        # connect_timeout: a request waits 5 s at most for a database that went away. No
        # pool_pre_ping: it costs a round trip per checkout (~90 µs of CPU here, two per
        # POST); after a server restart a request on a dead pooled connection is answered
        # 503 and SQLAlchemy drops the whole pool (test_database_restart_while_posting).
        return create_engine(url, connect_args={"connect_timeout": 5})

    @contextlib.contextmanager
    def migrating(self, engine: Engine) -> Iterator[Connection]:
        with engine.begin() as conn:  # PostgreSQL's DDL is transactional: all or nothing
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": self.MIGRATION_LOCK})
            yield conn

    def skip_locked(self, query: Select[Any]) -> Select[Any]:
        return query.with_for_update(skip_locked=True)

    def refused(self, exc: OperationalError) -> bool:
        # SQLSTATE class 28 (authorization) or 3D000 (no such database); psycopg reports a
        # refused login at connect time without a SQLSTATE, so its message tells. A server
        # not up yet (refused, unknown host, starting up) is worth waiting for.
        state = getattr(exc.orig, "sqlstate", None) or ""
        return (
            state.startswith("28")
            or state == "3D000"
            or any(sign in str(exc.orig) for sign in _REFUSALS)
        )

    def insert(self, table: Table) -> Any:
        return postgresql.insert(table)

    def insert_event(self, conn: Connection, row: dict[str, Any]) -> tuple[int, int]:
        # Two statements, not one: the counter's row lock (held until commit) orders a
        # topic's writers on every host, and the floor must be read by a statement that
        # starts after that lock is granted. In one statement its snapshot would predate
        # the wait and miss the row the writer before committed meanwhile: a floor too high.
        seq = conn.execute(_PG_NEXT_SEQ, row).scalar_one()
        floor = conn.execute(_PG_INSERT_EVENT, {**row, "seq": seq}).scalar_one()
        return int(seq), int(floor)


_EVENT_COLUMNS = "event_id, name, topic, seq, ts, payload, audience, lease_until, attempts, trace"
#: the lowest seq of the topic still waiting for the bridge, this row included
_FLOOR = """min(seq, coalesce((SELECT min(o.seq) FROM outbox o WHERE o.topic = :topic
    AND o.delivered_at IS NULL AND o.failed IS NULL), seq))"""
_SQLITE_INSERT_EVENT = text(
    f"""INSERT INTO outbox ({_EVENT_COLUMNS})
    VALUES (:event_id, :name, :topic,
        coalesce((SELECT seq FROM topic_seqs WHERE topic = :topic), 0) + 1,
        :ts, :payload, :audience, :lease_until, 1, :trace)
    RETURNING seq, {_FLOOR}"""
)
_PG_NEXT_SEQ = text(
    """INSERT INTO topic_seqs (topic, seq) VALUES (:topic, 1)
    ON CONFLICT (topic) DO UPDATE SET seq = topic_seqs.seq + 1 RETURNING seq"""
)
_PG_INSERT_EVENT = text(
    f"""INSERT INTO outbox ({_EVENT_COLUMNS})
    VALUES (:event_id, :name, :topic, :seq, :ts, :payload, :audience, :lease_until, 1, :trace)
    RETURNING {_FLOOR.replace("min(seq,", "LEAST(seq,")}"""
)

_REFUSALS = ("authentication failed", "does not exist", "no pg_hba.conf entry")

BACKENDS: dict[str, Backend] = {b.name: b for b in (SqliteBackend(), PostgresBackend())}


def parse_url(url: str) -> URL:
    """``url`` as SQLAlchemy's URL, with PostgreSQL's driver made explicit (psycopg 3:
    SQLAlchemy 2.0 would pick psycopg2 for a plain ``postgresql://``)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseConfigError(f"the database URL {url!r} is not a URL: {URL_HELP}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in BACKENDS:
        raise DatabaseConfigError(
            f"database {backend!r} is not supported (SQLite and PostgreSQL are): {URL_HELP}"
        )
    if backend == "postgresql" and driver != "psycopg":
        raise DatabaseConfigError(
            f"PostgreSQL driver {driver!r} is not supported: write postgresql+psycopg:// "
            "(psycopg 3, pip install 'sandbar[postgres]')"
        )
    if backend == "postgresql" and importlib.util.find_spec("psycopg") is None:
        raise DatabaseConfigError(
            "the database is PostgreSQL but its driver psycopg is not installed: "
            "pip install 'sandbar[postgres]'"
        )
    return parsed


def backend_of(engine: Engine | Connection) -> Backend:
    return BACKENDS[engine.dialect.name]


def make_engine(url: str) -> Engine:
    """The engine for ``url``, set up the way its database needs."""
    parsed = parse_url(url)
    return BACKENDS[parsed.get_backend_name()].make_engine(parsed)


@contextlib.contextmanager
def begin_write(engine: Engine) -> Iterator[Connection]:
    """``engine.begin()`` for a transaction that writes, the way its database needs."""
    with backend_of(engine).begin_write(engine) as conn:
        yield conn


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers and one writer work at once (several gunicorn workers);
    # busy_timeout makes concurrent writers wait instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # checkpoints run in the background (api/writers.py); this is the backstop
    cursor.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
    cursor.close()
