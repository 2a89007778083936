"""PostgreSQL as the database: URLs and driver, start-up against a server that refuses or is
not up yet, migrations on both databases, and the outbox's locks under concurrency."""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, delete, insert, inspect, select, update

from api.backends import DatabaseConfigError, backend_of, begin_write, parse_url
from api.db import articles, create_schema, make_engine, metadata, outbox
from api.migrations import current, downgrade, head
from api.outbox import OutboxSettings, Relay, now_ms
from tests.support.postgres import PostgresServer
from tests.support.procs import BIN, Api, Proc, base_env, free_port, http_ok, wait_until

# -- URLs ------------------------------------------------------------------------------


def test_plain_postgresql_urls_use_psycopg_3() -> None:
    assert parse_url("postgresql://u:p@db/app").drivername == "postgresql+psycopg"
    assert parse_url("postgres://u:p@db/app").drivername == "postgresql+psycopg"
    assert parse_url("postgresql+psycopg://u:p@db/app").drivername == "postgresql+psycopg"
    assert parse_url("sqlite:///x.db").drivername == "sqlite"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("not a url", "is not a URL: use sqlite:///"),
        ("mysql://u:p@db/app", "database 'mysql' is not supported (SQLite and PostgreSQL are)"),
        ("postgresql+psycopg2://u:p@db/app", "write postgresql+psycopg://"),
    ],
)
def test_a_url_sandbar_cannot_use_is_refused_naming_the_fix(url: str, says: str) -> None:
    with pytest.raises(DatabaseConfigError) as refused:
        parse_url(url)
    assert says in str(refused.value)


def test_a_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "psycopg" else real(name, *a)
    )
    with pytest.raises(DatabaseConfigError) as refused:
        parse_url("postgresql://u:p@db/app")
    assert "pip install 'sandbar[postgres]'" in str(refused.value)


def _serve(url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "sandbar-api"), "--port", "9"],
        env=base_env(SANDBAR_API_DATABASE_URL=url, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_refused_login_stops_the_api_with_one_line(postgres_server: PostgresServer) -> None:
    result = _serve(postgres_server.url(password="wrong"))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "refused the connection" in line and "password authentication failed" in line
    assert "wrong" not in line, "the password is not printed"
    assert "check the user, password and database name" in line


def test_a_bad_url_stops_the_api_with_one_line() -> None:
    result = _serve("postgresql+psycopg2://u:p@127.0.0.1/app")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "write postgresql+psycopg://" in line


def test_the_api_waits_for_a_database_that_is_not_up_yet(tmp_path: Path) -> None:
    server = PostgresServer()
    try:
        server.init()
        api = Api(tmp_path, "tcp://127.0.0.1:9", workers=1, database_url=server.url())
        api.proc.start()
        wait_until(lambda: "not reachable yet" in api.proc.output(), 20, "a retry logged")
        server.start()
        try:
            wait_until(lambda: http_ok(f"{api.url}/healthz"), 30, "api ready")
        finally:
            api.stop()
        delays = [line for line in api.proc.output().splitlines() if "retrying in" in line]
        assert delays and all("sandbar-test-password" not in line for line in delays)
    finally:
        server.remove()


# -- migrations ------------------------------------------------------------------------


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_migrations_upgrade_from_empty_downgrade_and_upgrade_again(database_url: str) -> None:
    engine = make_engine(database_url)
    assert current(engine) is None and _tables(engine) == set()
    create_schema(engine)
    assert current(engine) == head()
    assert _tables(engine) == set(metadata.tables)
    with engine.connect() as conn:  # the migrations make exactly what api/db.py declares
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    downgrade(engine, "base")
    assert current(engine) is None and _tables(engine) == set()
    create_schema(engine)
    assert current(engine) == head() and _tables(engine) == set(metadata.tables)
    engine.dispose()


def test_db_commands(database_url: str) -> None:
    env = base_env(SANDBAR_API_DATABASE_URL=database_url)

    def db(*args: str) -> str:
        done = subprocess.run(
            [str(BIN / "sandbar-api"), "db", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert db("current") == f"current: (empty)  latest: {head()}"
    assert db("upgrade") == f"current: {head()}  latest: {head()}"
    assert db("downgrade", "base") == f"current: (empty)  latest: {head()}"


def _migrate_when_all_are_ready(url: str, ready: Any) -> None:
    ready.wait(30)
    create_schema(make_engine(url))


def test_several_processes_migrating_at_once_migrate_once(database_url: str) -> None:
    """As several API hosts starting together: forked after the imports, released at once."""
    context = multiprocessing.get_context("fork")
    ready = context.Barrier(4)
    hosts = [
        context.Process(target=_migrate_when_all_are_ready, args=(database_url, ready))
        for _ in range(4)
    ]
    for host in hosts:
        host.start()
    for host in hosts:
        host.join(60)
    assert [host.exitcode for host in hosts] == [0, 0, 0, 0]
    engine = make_engine(database_url)
    assert current(engine) == head()
    engine.dispose()


# -- the outbox's locks -----------------------------------------------------------------


def _event(event_id: str, topic: str = "articles") -> dict[str, Any]:
    """An outbox row as ``insert_event`` takes it (all but ``seq``)."""
    ts = now_ms()
    payload = json.dumps({"id": event_id})
    return {
        "event_id": event_id,
        "name": "article.created",
        "topic": topic,
        "ts": ts,
        "payload": payload,
        "audience": None,
        "lease_until": ts + 3000,
        "trace": None,
    }


def test_a_topics_counter_lock_orders_writers_by_commit(postgres_url: str) -> None:
    """Why seq is in commit order across hosts: the second writer of a topic waits at its
    number until the first commits, then gets the next one, and its floor counts the first's
    row (committed while it waited, unacknowledged): read after the wait, not before."""
    engine = make_engine(postgres_url)
    create_schema(engine)
    second: list[tuple[int, int]] = []
    with engine.begin() as first:
        assert backend_of(first).insert_event(first, _event("a")) == (1, 1)

        def other_host() -> None:
            with engine.begin() as conn:
                second.append(backend_of(conn).insert_event(conn, _event("b")))

        waiting = threading.Thread(target=other_host)
        waiting.start()
        time.sleep(1.0)
        assert second == [], "the second writer waited for the first's commit"
    waiting.join(10)
    assert second == [(2, 1)]
    engine.dispose()


def test_each_event_is_numbered_in_its_topic_with_the_floor_of_what_waits(
    database_url: str,
) -> None:
    """seq counts per topic, on past pruned rows too; the floor is the lowest seq still
    unacknowledged, the new row included."""
    engine = make_engine(database_url)
    create_schema(engine)

    def insert(event_id: str, topic: str = "articles") -> tuple[int, int]:
        with begin_write(engine) as conn:
            return backend_of(conn).insert_event(conn, _event(event_id, topic))

    assert [insert("a"), insert("b"), insert("x", "other")] == [(1, 1), (2, 1), (1, 1)]
    with begin_write(engine) as conn:
        conn.execute(update(outbox).where(outbox.c.event_id == "a").values(delivered_at=1))
    assert insert("c") == (3, 2)
    with begin_write(engine) as conn:  # everything acknowledged, and pruned
        conn.execute(delete(outbox).where(outbox.c.topic == "articles"))
    assert insert("d") == (4, 4)
    engine.dispose()


def _expired_rows(engine: Engine, count: int) -> None:
    past = now_ms() - 10_000
    rows: list[dict[str, Any]] = [
        {
            "event_id": f"e{i}",
            "name": "article.created",
            "topic": "articles",
            "seq": i + 1,
            "ts": past,
            "payload": json.dumps({"i": i}),
            "lease_until": past,
            "attempts": 1,
        }
        for i in range(count)
    ]
    with engine.begin() as conn:
        conn.execute(insert(outbox), rows)


def test_relays_on_two_hosts_never_claim_a_row_twice(database_url: str) -> None:
    setup = make_engine(database_url)
    create_schema(setup)
    _expired_rows(setup, 3000)
    settings = OutboxSettings(bridge_endpoint="tcp://127.0.0.1:9", lease_seconds=60)
    claimed: list[list[str]] = [[], []]
    start = threading.Barrier(2)

    def relay(index: int) -> None:
        own = Relay(make_engine(database_url), settings)  # its own engine: another host
        start.wait()
        while batch := own._claim_expired(batch=100):
            claimed[index].extend(e.id for e in batch)
        own.engine.dispose()

    threads = [threading.Thread(target=relay, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    first, second = set(claimed[0]), set(claimed[1])
    print(f"\nclaimed: relay A {len(first)}, relay B {len(second)}")
    assert len(claimed[0]) + len(claimed[1]) == 3000, "every expired row claimed once"
    assert first.isdisjoint(second)
    assert first and second, "both relays took part"
    setup.dispose()


def test_a_relay_skips_rows_another_hosts_relay_is_claiming(postgres_url: str) -> None:
    """``FOR UPDATE SKIP LOCKED``: while one relay's claim holds rows, another relay takes
    the next ones at once instead of waiting for that transaction."""
    engine = make_engine(postgres_url)
    create_schema(engine)
    _expired_rows(engine, 200)
    settings = OutboxSettings(bridge_endpoint="tcp://127.0.0.1:9", lease_seconds=60)
    other = Relay(make_engine(postgres_url), settings)
    taken: list[str] = []
    with engine.begin() as claiming:  # the first relay, mid-claim: the oldest 100 rows locked
        locked = {
            row.event_id
            for row in claiming.execute(
                select(outbox.c.event_id).order_by(outbox.c.id).limit(100).with_for_update()
            )
        }
        thread = threading.Thread(target=lambda: taken.extend(e.id for e in other._claim_expired()))
        thread.start()
        thread.join(3)
        assert not thread.is_alive(), "the second relay waited for the first one's rows"
    assert len(taken) == 100 and locked.isdisjoint(taken)
    other.engine.dispose()
    engine.dispose()


def test_a_database_made_before_migrations_is_adopted(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    metadata.create_all(engine)  # what create_schema did before Alembic
    create_schema(engine)
    assert current(engine) == head()
    engine.dispose()


def test_sandbar_up_takes_the_database_url_from_the_flag_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandbar.cli import UpConfig

    monkeypatch.delenv("SANDBAR_API_DATABASE_URL", raising=False)
    sqlite_file = f"sqlite:///{tmp_path / 'api.db'}"
    assert UpConfig(run_dir=tmp_path).env()["SANDBAR_API_DATABASE_URL"] == sqlite_file
    monkeypatch.setenv("SANDBAR_API_DATABASE_URL", "postgresql://u:p@db/env")
    assert UpConfig().env()["SANDBAR_API_DATABASE_URL"] == "postgresql://u:p@db/env"
    flag = UpConfig(database_url="postgresql://u:p@db/flag").env()
    assert flag["SANDBAR_API_DATABASE_URL"] == "postgresql://u:p@db/flag"


def test_sandbar_up_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    """``sandbar up --database-url``: the stack migrates PostgreSQL before the API serves,
    and writes go there (no SQLite file appears)."""
    ports = {name: free_port() for name in ("router", "backend", "api", "bridge")}
    argv = [str(BIN / "sandbar"), "up", "--run-dir", str(tmp_path / "run")]
    for name, port in ports.items():
        argv += [f"--{name}-port", str(port)]
    up = Proc("up", [*argv, "--database-url", postgres_url], base_env(SANDBAR_DEV="1"), tmp_path)
    up.start()
    try:
        wait_until(lambda: "Sandbar is ready" in up.output(), 90, "sandbar up ready", 0.2)
        api = f"http://127.0.0.1:{ports['api']}"
        token = requests.post(
            f"{api}/auth/token", timeout=5, json={"username": "demo", "password": "sandbar-demo"}
        ).json()["token"]
        created = requests.post(
            f"{api}/articles",
            json={"title": "on postgres", "body": "b"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        assert created.status_code == 201
        engine = make_engine(postgres_url)
        assert current(engine) == head()
        with engine.connect() as conn:
            titles = conn.execute(select(articles.c.title)).scalars().all()
        engine.dispose()
        assert titles == ["on postgres"]
        assert not (tmp_path / "run" / "api.db").exists()
    finally:
        up.stop()
