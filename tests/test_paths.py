"""The run state (database, CURVE keys, the router's config and node key) is made owner-only
by every part of the kit that creates it, parents included."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.backends import make_engine
from bridge.keys import ensure_stack_keys
from sandbar.paths import private_dir
from sandbar.router import RouterConfig, render


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """022, the usual umask, which left ``.sandbar`` 0755."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_private_dir_makes_each_missing_folder_owner_only(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o755)
    made = private_dir(mine / ".sandbar" / "router")
    assert made == mine / ".sandbar" / "router"
    assert (_mode(mine), _mode(mine / ".sandbar"), _mode(made)) == (0o755, 0o700, 0o700)
    assert private_dir(made) == made  # again: nothing to do, nothing raised


def test_the_router_makes_its_run_dir_private(tmp_path):
    """``make up`` starts the router first of all: it made ``.sandbar`` 0755."""
    cbdir = render(RouterConfig(run_dir=tmp_path / ".sandbar" / "router"))
    assert (cbdir / "config.yaml").is_file()
    assert (_mode(tmp_path / ".sandbar"), _mode(cbdir)) == (0o700, 0o700)


def test_stack_keys_make_their_parents_private(tmp_path):
    ensure_stack_keys(tmp_path / ".sandbar" / "curve")
    assert _mode(tmp_path / ".sandbar") == 0o700
    assert _mode(tmp_path / ".sandbar" / "curve") == 0o700


def test_the_database_makes_its_parents_private(tmp_path):
    database = tmp_path / ".sandbar" / "state" / "api.db"
    engine = make_engine(f"sqlite:///{database}")
    with contextlib.closing(engine.connect()):
        pass
    engine.dispose()
    assert (_mode(tmp_path / ".sandbar"), _mode(database.parent)) == (0o700, 0o700)
    assert _mode(database) == 0o600
