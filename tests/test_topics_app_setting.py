"""One setting names the topics app for every service, and topic code reads the service's
settings through its session."""

from __future__ import annotations

import subprocess

from api.config import ApiConfig
from bridge.keys import ensure_stack_keys
from sandbar.cli import UpConfig
from tests.support.procs import BIN, base_env, free_port
from tests.topics_app import topics as test_topics
from topics.registry import APP_VAR
from topics.testing import TopicTester


def test_one_variable_configures_the_topics_service_bridge_and_api(tmp_path):
    ensure_stack_keys(tmp_path / "curve")  # as `sandbar up` does before it starts the API
    env = UpConfig(topics_app="my_topics:topics", run_dir=tmp_path).env()
    assert env[APP_VAR] == "my_topics:topics"
    assert ApiConfig.from_env(env).topics_app == "my_topics:topics"
    explicit = {**env, "SANDBAR_API_TOPICS_APP": "other:topics"}
    assert ApiConfig.from_env(explicit).topics_app == "other:topics"
    assert ApiConfig.from_env({}).topics_app == "topics.examples:topics"


def _run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=base_env(**env), capture_output=True, text=True, timeout=60, cwd="/"
    )


def test_sandbar_up_refuses_a_wrong_topics_app_before_starting_anything(tmp_path):
    result = _run(
        [
            str(BIN / "sandbar"),
            "up",
            "--topics-app",
            "my_topics:topics",
            "--run-dir",
            str(tmp_path),
            "--api-port",
            str(free_port()),
        ],
        SANDBAR_DEV="1",
    )
    assert result.returncode == 2
    assert "topics app 'my_topics:topics': could not import module 'my_topics'" in result.stderr
    assert "router |" not in result.stdout + result.stderr, "nothing was started"


def test_the_api_refuses_a_wrong_topics_app_at_start(tmp_path):
    result = _run(
        [str(BIN / "sandbar-api")],
        SANDBAR_TOPICS_APP="topics.examples:nope",
        SANDBAR_API_PORT=str(free_port()),
        SANDBAR_API_DATABASE_URL=f"sqlite:///{tmp_path / 'api.db'}",
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "sandbar-api: topics app 'topics.examples:nope': attribute 'nope' not found in module "
        "'topics.examples'; it has 'topics.examples:topics'"
    ]


def test_topic_code_reads_the_service_settings_through_its_session(client, api_port):
    browser = client()
    browser.subscribe("settings.echo")
    [event] = browser.wait_for(1, name="settings")
    assert event.args[0] == {"api_url": f"http://127.0.0.1:{api_port}"}
    with TopicTester(test_topics, settings={"api_url": "http://api.test"}) as tester:
        harnessed = tester.client()
        harnessed.subscribe("settings.echo")
        assert harnessed.named("settings")[0].payload == {"api_url": "http://api.test"}
        assert test_topics.settings["api_url"] == "http://api.test"
