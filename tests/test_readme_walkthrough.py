"""README "Adding a feature", followed as written: its files are extracted into a fresh
project folder, its tests run there with the plugin, and its commands run there too."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import requests
import yaml

from tests.support.procs import (
    BIN,
    ROOT,
    SHIPPED_BRIDGE_CONFIG,
    Proc,
    base_env,
    free_port,
    wait_until,
)
from tests.support.wamp import Client


def walkthrough() -> dict[str, str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Adding a feature", 1)[1].split("\n## ", 1)[0]
    blocks = dict(re.findall(r"<!-- walkthrough: (.+?) -->\n```\w+\n(.*?)```", section, re.S))
    assert set(blocks) >= {"my_app.py", "my_topics.py", "test_comments.py", "pyproject.toml"}
    return blocks


def _project(tmp_path: Path) -> Path:
    blocks = walkthrough()
    for name in ("my_app.py", "my_topics.py", "test_comments.py", "pyproject.toml"):
        (tmp_path / name).write_text(blocks[name])
    bridge = yaml.safe_load(SHIPPED_BRIDGE_CONFIG.read_text())  # "a copy of config/bridge.yaml"
    bridge["routes"].update(yaml.safe_load(blocks["bridge.yaml routes"]))
    (tmp_path / "bridge.yaml").write_text(yaml.safe_dump(bridge, sort_keys=False))
    return tmp_path


def _commands(tmp_path: Path) -> list[list[str]]:
    lines = walkthrough()["run"].strip().splitlines()
    return [line.split() for line in lines]


def _run(project: Path, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = base_env(PATH=f"{BIN}:/usr/bin:/bin")
    env.pop("PYTHONPATH", None)  # the README promises none is needed
    return subprocess.run(
        argv, cwd=project, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_the_walkthroughs_tests_pass_in_a_fresh_project(tmp_path):
    project = _project(tmp_path)
    result = _run(project, [str(BIN / "pytest"), "-q", "-p", "no:cacheprovider"], timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_the_walkthroughs_commands_check_list_and_run_the_feature(tmp_path):
    project = _project(tmp_path)
    *checks, up = _commands(project)
    for argv in checks:
        result = _run(project, argv)
        assert result.returncode == 0, f"{argv}: {result.stderr}"
    assert "comment.added" in _run(project, checks[1]).stdout
    assert "article.{article_id:int}.comments" in _run(project, checks[2]).stdout

    ports = {name: str(free_port()) for name in ("router", "backend", "api", "bridge")}
    argv = [*up, *(f"--{name}-port={port}" for name, port in ports.items())]
    argv += ["--run-dir", str(tmp_path / "run")]
    env = base_env(SANDBAR_DEV="1", PATH=f"{BIN}:/usr/bin:/bin")
    env.pop("PYTHONPATH", None)
    running = Proc("up", argv, env, tmp_path, cwd=project).start()
    try:
        wait_until(lambda: "Sandbar is ready" in running.output(), 90, "sandbar up ready", 0.2)
        reader = Client(f"ws://127.0.0.1:{ports['router']}/ws")
        try:
            reader.subscribe("article.7.comments")
            api = f"http://127.0.0.1:{ports['api']}"
            token = requests.post(
                f"{api}/auth/token",
                json={"username": "demo", "password": "sandbar-demo"},
                timeout=10,
            ).json()["token"]
            posted = requests.post(
                f"{api}/articles/7/comments",
                json={"text": "from sandbar up"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            assert posted.status_code == 201, posted.text
            [comment] = reader.wait_for(1, name="comment.added")
            assert comment.args[0] == {"article_id": 7, "text": "from sandbar up", "author": "demo"}
        finally:
            reader.close()
    finally:
        running.stop()
    assert "Traceback" not in running.output()
