"""Storage: SQLAlchemy Core tables, on SQLite (the default) or PostgreSQL.

The tables are created and changed by the Alembic migrations in api/migrations/
(``sandbar-api db upgrade``); what differs between the two databases is in
api/backends.py.
"""

from __future__ import annotations

import logging
import time
import uuid
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
    func,
    select,
)
from sqlalchemy.exc import OperationalError

from api.backends import BACKENDS, DatabaseConfigError, backend_of, begin_write, make_engine

__all__ = ["DatabaseConfigError", "make_engine", "metadata"]

log = logging.getLogger("sandbar.api.db")

#: Constraint names the same on every database, so a migration can name what it changes.
metadata = MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    }
)

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
    Column("trace", String(55), nullable=True),  # W3C traceparent of the request that made it
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
    backend = BACKENDS.get(dialect_name)
    if backend is None:
        raise RuntimeError(f"Sandbar supports SQLite and PostgreSQL, not {dialect_name}")
    return backend.insert(table)


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


def create_schema(engine: Engine) -> None:
    """Bring the schema to the latest migration (one process at a time: api/migrations)."""
    from api.migrations import upgrade  # its env.py imports this module

    upgrade(engine)


def wait_for_database(engine: Engine, timeout: float) -> None:
    """Connect once, retrying with capped backoff while the server is not reachable yet
    (compose starts services in parallel); a refused login or a missing database raises
    DatabaseConfigError at once, since waiting cannot fix it."""
    deadline, delay = time.monotonic() + timeout, 0.25
    where = engine.url.render_as_string(hide_password=True)
    while True:
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            if backend_of(engine).refused(exc):
                raise DatabaseConfigError(
                    f"the database {where} refused the connection: {reason} "
                    "(check the user, password and database name in SANDBAR_API_DATABASE_URL)"
                ) from None
            if time.monotonic() + delay > deadline:
                raise DatabaseConfigError(
                    f"the database {where} is not reachable after {timeout:.0f} s: {reason}"
                ) from None
            log.warning(
                "database %s not reachable yet (%s); retrying in %.1f s", where, reason, delay
            )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
