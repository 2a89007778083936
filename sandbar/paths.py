"""Where the project's non-Python parts live (router template, demo page, run state)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

ROOT = Path(os.environ.get("SANDBAR_ROOT", Path(__file__).resolve().parents[1]))
ROUTER_TEMPLATE = ROOT / ".crossbar" / "config.yaml"
WEB_DIR = ROOT / "web"
RUN_DIR = ROOT / ".sandbar"


def private_dir(path: str | Path) -> Path:
    """Make ``path`` and each missing parent owner-only (0700), as every part of the kit that
    creates its run state does: it holds the database, the CURVE keys and the router's node
    key. ``mkdir(mode=..., parents=True)`` gives the parents the umask's 0755. Existing
    folders keep their mode (a user's own folder is theirs to set)."""
    path = Path(path)
    missing = [folder for folder in (path, *path.parents) if not folder.exists()]
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            folder.mkdir(mode=0o700)
    return path
