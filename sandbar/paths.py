"""Where the project's non-Python parts live (router template, demo page, run state)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(os.environ.get("SANDBAR_ROOT", Path(__file__).resolve().parents[1]))
ROUTER_TEMPLATE = ROOT / ".crossbar" / "config.yaml"
WEB_DIR = ROOT / "web"
RUN_DIR = ROOT / ".sandbar"
