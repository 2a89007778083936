"""The PostgreSQL fixtures: one throwaway server per session (sandbar/pgserver.py), a
fresh database per test (CREATE DATABASE is cheap)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbar.pgserver import PASSWORD, PostgresServer

__all__ = ["PASSWORD", "PostgresServer", "database_url", "postgres_server", "postgres_url"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One server for the whole session, stopped and removed at the end."""
    server = PostgresServer()
    try:
        server.init().start()
        yield server
    finally:
        server.remove()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh, empty database on the session's server."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that takes it runs on SQLite (a file in its folder) and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'api.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()
