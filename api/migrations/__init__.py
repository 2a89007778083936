"""Schema migrations (Alembic), on SQLite and PostgreSQL alike.

``sandbar-api db upgrade|current|downgrade`` runs them; the API's server upgrades to the
latest before it serves. Each runs in the backend's migration transaction
(api/backends.py): one process at a time, so several API hosts starting at once migrate
once. An app built on the kit adds a table with a new file in ``versions/``
(``revision``/``down_revision`` chain, ``op.create_table``), next to its ``Table`` in
its own module.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine

from api.backends import backend_of

HERE = Path(__file__).resolve().parent


def _config(conn: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = conn
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    with backend_of(engine).migrating(engine) as conn:
        command.upgrade(_config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    with backend_of(engine).migrating(engine) as conn:
        command.downgrade(_config(conn), revision)


def current(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head() -> str:
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(HERE))
    revision = ScriptDirectory.from_config(config).get_current_head()
    assert revision is not None
    return revision
