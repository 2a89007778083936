"""Storage: SQLAlchemy Core tables and an engine, SQLite by default.

Only portable SQL is used here, so pointing ``database_url`` at PostgreSQL
(``postgresql+psycopg://…``) needs a driver install and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateIndex, CreateTable

from api.writers import AUTOCHECKPOINT_PAGES, begin_write, take_turns

metadata = MetaData()

articles = Table(
    "articles",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("title", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(256), nullable=False),
    Column("role", String(64), nullable=False, default="user"),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("token_version", Integer, nullable=False, default=1),  # bump: all tokens die
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

#: Events written in the same transaction as the change that caused them, sent to the
#: bridge after commit and resent until it acknowledges them (see api/outbox.py).
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(32), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("topic", String(512), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("ts", BigInteger, nullable=False),  # unix ms
    Column("payload", Text, nullable=False),  # JSON
    Column("audience", Text, nullable=True),  # JSON publish options for targeted events
    Column("lease_until", BigInteger, nullable=False),  # unix ms: not resent before
    Column("attempts", Integer, nullable=False, default=0),
    Column("delivered_at", BigInteger, nullable=True),  # unix ms, set on the bridge's ack
    Column("failed", Text, nullable=True),  # why the bridge refused it for good
    UniqueConstraint("topic", "seq"),
    Index("ix_outbox_pending", "delivered_at", "lease_until"),
    Index("ix_outbox_ts", "ts"),  # retention: finds expired rows without a table scan
)
#: Rows still waiting for the bridge (neither acknowledged nor refused).
unacknowledged = outbox.c.delivered_at.is_(None) & outbox.c.failed.is_(None)
#: Those rows by topic: the per-event ``floor`` query reads this instead of every row the
#: topic ever had (up to the retention count).
Index(
    "ix_outbox_unacknowledged",
    outbox.c.topic,
    outbox.c.seq,
    sqlite_where=unacknowledged,
    postgresql_where=unacknowledged,
)

#: The last ``seq`` handed out per topic (a row lock orders concurrent writers).
topic_seqs = Table(
    "topic_seqs",
    metadata,
    Column("topic", String(512), primary_key=True),
    Column("seq", BigInteger, nullable=False),
)


#: Facts about this database, such as the outbox epoch: a random id chosen when the
#: database is created, so subscribers and the bridge can tell a fresh database's
#: seq 1 from an old database's.
sandbar_meta = Table(
    "sandbar_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)


def upsert(dialect_name: str, table: Table) -> Any:
    """An INSERT that supports ``on_conflict_do_*`` on this database (``conn.dialect.name``)."""
    dialect = {"sqlite": sqlite, "postgresql": postgresql}.get(dialect_name)
    if dialect is None:
        raise RuntimeError(f"Sandbar supports SQLite and PostgreSQL, not {dialect_name}")
    return dialect.insert(table)


def outbox_epoch(engine: Engine) -> str:
    """This database's outbox epoch, created on first use (safe under concurrent workers)."""
    with begin_write(engine) as conn:
        conn.execute(
            upsert(conn.dialect.name, sandbar_meta)
            .values(key="outbox_epoch", value=uuid.uuid4().hex[:12])
            .on_conflict_do_nothing()
        )
        return str(
            conn.execute(
                select(sandbar_meta.c.value).where(sandbar_meta.c.key == "outbox_epoch")
            ).scalar_one()
        )


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


def make_engine(url: str) -> Engine:
    """Create the engine (and the SQLite file's folder) for ``url``."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        on_disk = Path(database) if database and database != ":memory:" else None
        if on_disk is not None:  # owner only: SQLite gives -wal and -shm the file's mode
            on_disk.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.close(os.open(on_disk, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        engine = create_engine(url)
        event.listen(engine, "connect", _tune_sqlite)
        if on_disk is not None:
            take_turns(engine, on_disk)
        return engine
    return create_engine(url, pool_pre_ping=True)


def create_schema(engine: Engine) -> None:
    """Create missing tables; safe when several worker processes start at once."""
    with engine.begin() as conn:  # not begin_write: no checkpoint thread in gunicorn's master
        for table in metadata.sorted_tables:
            conn.execute(CreateTable(table, if_not_exists=True))
            for index in table.indexes:
                conn.execute(CreateIndex(index, if_not_exists=True))
