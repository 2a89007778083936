"""SQLite writers in several processes and threads take turns (api/writers.py)."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select

from api import writers
from api.backends import begin_write
from api.db import articles, create_schema, make_engine


def _no_waiting(dbapi_connection: Any, _record: Any) -> None:
    # Without turns, a writer that meets another would fail at once ("database is locked").
    dbapi_connection.execute("PRAGMA busy_timeout=0")


def _write(url: str, writer: int, count: int) -> None:
    engine = make_engine(url)
    event.listen(engine, "connect", _no_waiting)

    def thread(t: int) -> None:
        for i in range(count):
            with begin_write(engine) as conn:
                conn.execute(insert(articles).values(title=f"{writer}-{t}-{i}", body="b"))
                conn.execute(select(func.count()).select_from(articles)).scalar_one()

    threads = [threading.Thread(target=thread, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_writers_in_processes_and_threads_take_turns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'api.db'}"
    create_schema(make_engine(url))
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write, args=(url, w, 60)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]  # an OperationalError would exit 1
    with make_engine(url).connect() as conn:
        assert conn.execute(select(func.count()).select_from(articles)).scalar_one() == 3 * 4 * 60
    assert (tmp_path / "api.db.writer-lock").exists()


def test_a_nested_write_is_the_same_turn(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'api.db'}")
    create_schema(engine)
    done = threading.Event()

    def nested() -> None:
        with begin_write(engine) as conn, begin_write(engine):
            conn.execute(insert(articles).values(title="t", body="b"))
        done.set()

    threading.Thread(target=nested, daemon=True).start()
    assert done.wait(10), "a nested begin_write waited for itself"


def test_a_turn_held_too_long_elsewhere_is_an_error_that_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writers, "TURN_TIMEOUT", 0.3)
    engine = make_engine(f"sqlite:///{tmp_path / 'api.db'}")
    create_schema(engine)
    other = os.open(tmp_path / "api.db.writer-lock", os.O_RDWR | os.O_CREAT)  # "another process"
    fcntl.flock(other, fcntl.LOCK_EX)
    with (
        pytest.raises(writers.WriteTimeout, match="another process kept its turn"),
        begin_write(engine),
    ):
        pass
    fcntl.flock(other, fcntl.LOCK_UN)
    os.close(other)
    with begin_write(engine) as conn:  # free again
        conn.execute(insert(articles).values(title="t", body="b"))
