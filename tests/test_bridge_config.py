"""A broken bridge config stops the bridge at once with one line naming the key and the fix."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from bridge.config import load_config
from tests.support.procs import BIN, SHIPPED_BRIDGE_CONFIG, base_env, session_keys

GOOD = """
zmq: {bind: "tcp://127.0.0.1:5555", curve_keys: "${SANDBAR_BRIDGE_CURVE_KEYS}"}
router: {url: "rs://127.0.0.1:8081", authid: bridge, ticket: "${SANDBAR_BACKEND_SECRET}"}
routes:
  article.created: {topic: articles}
"""

CASES = {
    "unknown top-level key": (
        GOOD + "routs: {}\n",
        "unknown key 'routs': remove it or check its spelling",
    ),
    "unknown route key": (
        GOOD.replace("{topic: articles}", "{topic: articles, retian: true}"),
        """unknown key 'routes["article.created"].retian'""",
    ),
    "missing key": (
        GOOD.replace("authid: bridge, ", ""),
        "missing key 'router.authid': add it",
    ),
    "bad template": (
        GOOD.replace("{topic: articles}", '{topic: "chat.{chan"}'),
        """key 'routes["article.created"].topic': topic 'chat.{chan': '{chan' mixes text""",
    ),
    "reserved topic": (
        GOOD.replace("{topic: articles}", '{topic: "wamp.session.kill"}'),
        "'wamp.session.kill' is reserved",
    ),
    "invalid topic uri": (
        GOOD.replace("{topic: articles}", '{topic: "new articles"}'),
        "'new articles' is not a valid WAMP URI",
    ),
    "bad event name": (
        GOOD.replace("article.created:", "Article Created:"),
        "'Article Created' is not a valid event name",
    ),
    "bad router url": (
        GOOD.replace("rs://127.0.0.1:8081", "http://127.0.0.1"),
        "key 'router.url': 'http://127.0.0.1' is not a router URL",
    ),
    "unset environment variable": (
        GOOD.replace("${SANDBAR_BACKEND_SECRET}", "${SANDBAR_NOT_SET}"),
        "environment variable SANDBAR_NOT_SET is not set",
    ),
    "wrong type": (
        GOOD.replace('bind: "tcp://127.0.0.1:5555"', "max_frame_bytes: lots"),
        "key 'zmq.max_frame_bytes': Input should be a valid integer",
    ),
    "duplicate window out of range": (
        GOOD + "publish: {duplicate_window: 0}\n",
        "key 'publish.duplicate_window': Input should be greater than 0",
    ),
    "not yaml": ("routes: [unclosed\n", "not valid YAML"),
    "no routes": (GOOD.split("routes:")[0] + "routes: {}\n", "key 'routes'"),
}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_exits_2_with_a_line_naming_the_key(tmp_path, case):
    text, expected = CASES[case]
    path = _write(tmp_path, text)
    result = subprocess.run(
        [str(BIN / "sandbar-bridge"), str(path)],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"sandbar-bridge: {path}:")
    assert expected in lines[0]


def test_shipped_config_is_valid():
    result = subprocess.run(
        [str(BIN / "sandbar-bridge"), "--check", str(SHIPPED_BRIDGE_CONFIG)],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{SHIPPED_BRIDGE_CONFIG}: OK (")  # whatever routes it has


def test_missing_secret_outside_dev_mode_is_refused(tmp_path):
    env = {k: v for k, v in base_env().items() if k != "SANDBAR_BACKEND_SECRET"}
    result = subprocess.run(
        [str(BIN / "sandbar-bridge"), str(_write(tmp_path, GOOD))],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "SANDBAR_BACKEND_SECRET is not set" in result.stderr
    assert "SANDBAR_DEV=1" in result.stderr


def test_routes_compile_on_load(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBAR_BACKEND_SECRET", "s")
    keys = "SANDBAR_BRIDGE_CURVE_KEYS"
    monkeypatch.setenv(keys, session_keys()[keys])
    config = load_config(
        _write(tmp_path, GOOD.replace("{topic: articles}", '{topic: "chat.{channel}"}'))
    )
    template = config.routes["article.created"].topic
    assert template.fields == ("channel",)
    assert template.render({"channel": "general"}) == "chat.general"
