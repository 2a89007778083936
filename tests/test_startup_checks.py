"""Mistakes found at start, with the fix named, instead of a 500 on some later request."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from api.app import create_app
from api.config import ApiConfig
from bridge.config import RoutesConfig, validate_config
from sandbar.config import ConfigError
from tests.support.procs import BIN, SHIPPED_BRIDGE_CONFIG, TOKEN_SECRET, base_env, free_port
from topics import TopicRouter
from topics.registry import load_app

# Free ports, in case a bridge without the checks runs: it must not take the default ones.
BRIDGE = f"""
zmq: {{bind: "tcp://127.0.0.1:{free_port()}", curve_keys: "${{SANDBAR_BRIDGE_CURVE_KEYS}}"}}
router: {{url: "rs://127.0.0.1:{free_port()}", authid: bridge, ticket: "${{SANDBAR_BACKEND_SECRET}}"}}
routes:
  article.created: {{topic: articles}}
  comment.added: {{topic: "article.{{article_id}}.comments"}}
"""

COMMENTS_APP = """
from topics import TopicRouter
topics = TopicRouter()
topics.add_topic("articles")
topics.add_topic("article.{article_id:int}.comments")
"""


def _bridge(tmp_path: Path, *args: str, env: dict[str, str] | None = None):
    path = tmp_path / "bridge.yaml"
    if not path.exists():
        path.write_text(BRIDGE)
    return subprocess.run(
        [str(BIN / "sandbar-bridge"), *args, str(path)],
        env=base_env() if env is None else env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=10,
    )


def test_create_app_refuses_a_forwarded_event_without_a_route(tmp_path):
    routes = tmp_path / "bridge.yaml"
    routes.write_text("routes:\n  article.created: {topic: articles}\n")
    config = ApiConfig(
        database_url=f"sqlite:///{tmp_path / 'api.db'}",
        routes_config=routes,
        delivery="fire_and_forget",
        token_secret=TOKEN_SECRET,
    )
    with pytest.raises(ConfigError) as refused:
        create_app(config)
    message = str(refused.value)
    assert "event 'user.notified' is forwarded (push.forward)" in message
    assert "add 'routes: {user.notified: {topic: <topic URI>}}'" in message
    assert str(routes) in message


@pytest.mark.parametrize("check", [True, False], ids=["--check", "start"])
def test_bridge_refuses_a_route_no_topic_declares(tmp_path, check):
    result = _bridge(tmp_path, *(["--check"] if check else []))
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert (
        "route 'comment.added' publishes to 'article.{article_id}.comments', which no topic "
        "declares; browsers could never subscribe to it; the nearest declared topic is"
    ) in line
    assert "(topics app 'topics.examples:topics')" in line


def test_the_projects_own_topics_app_from_the_current_directory(tmp_path):
    """No PYTHONPATH: the console script finds my_topics.py where it is run, as flask does."""
    (tmp_path / "my_topics.py").write_text(COMMENTS_APP)
    env = base_env(SANDBAR_TOPICS_APP="my_topics:topics")
    env.pop("PYTHONPATH", None)
    result = _bridge(tmp_path, "--check", env=env)
    assert result.returncode == 0, result.stderr
    assert "OK (2 routes, topics app my_topics:topics" in result.stdout
    flag = _bridge(tmp_path, "--check", "--topics-app", "my_topics:topics")
    assert flag.returncode == 0, flag.stderr


def test_check_needs_no_secrets(tmp_path):
    (tmp_path / "bridge.yaml").write_text(BRIDGE.replace("  comment.added", "  # comment.added"))
    env = {k: v for k, v in base_env().items() if k != "SANDBAR_BACKEND_SECRET"}
    result = _bridge(tmp_path, "--check", env=env)
    assert result.returncode == 0, result.stderr
    assert "not set, so not checked: SANDBAR_BACKEND_SECRET" in result.stdout
    running = _bridge(tmp_path, env=env)  # running it still needs the secret
    assert running.returncode == 2 and "SANDBAR_BACKEND_SECRET is not set" in running.stderr


def test_shipped_routes_reach_the_shipped_topics():
    result = subprocess.run(
        [str(BIN / "sandbar-bridge"), "--check", str(SHIPPED_BRIDGE_CONFIG)],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def _unreachable(topics: TopicRouter, *templates: str) -> list[str]:
    routes = {"routes": {f"e{i}": {"topic": t} for i, t in enumerate(templates)}}
    table = validate_config(RoutesConfig, routes).route_table()
    return [p.split("'")[3] for p in table.unreachable(topics)]


def test_which_route_topics_a_topic_declares():
    topics = TopicRouter()
    topics.add_topic("user.{id:int}")
    topics.add_topic("feed", match="prefix")
    topics.add_topic("room..messages", match="wildcard")
    topics.add_topic("chat.{channel:[a-z]+}")
    reachable = ["user.{who}", "user.7", "feed.{x}.y", "feed", "room.{r}.messages", "chat.{c}"]
    reachable += ["sandbar.auth.revoked", "chat.general"]
    assert _unreachable(topics, *reachable) == []
    assert _unreachable(topics, "user.bob", "chat.General", "room.{r}.other", "nope.{x}") == [
        "user.bob",
        "chat.General",
        "room.{r}.other",
        "nope.{x}",
    ]


def test_loading_a_topics_app_says_what_is_wrong(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "broken_topics.py").write_text("import os\n\nraise ValueError('typo here')\n")
    (tmp_path / "needs_dep.py").write_text("import not_installed_dep\n")
    cases = {
        "no_such_module:topics": "could not import module 'no_such_module' from",
        "topics.examples": "must be 'module:attribute'",
        "topics.examples:topicz": "attribute 'topicz' not found in module 'topics.examples'; "
        "it has 'topics.examples:topics'",
        "topics.examples:Chat": "is a type, not a TopicRouter",
        "broken_topics:topics": "importing it raised ValueError: typo here (broken_topics.py, line 3)",
        "needs_dep:topics": "No module named 'not_installed_dep' (needs_dep.py, line 1)",
    }
    for spec, expected in cases.items():
        with pytest.raises(ConfigError) as refused:
            load_app(spec)
        assert expected in str(refused.value), spec


def test_bad_topics_app_stops_the_topics_service_with_one_line(tmp_path):
    result = subprocess.run(
        [str(BIN / "sandbar-topics"), "--app", "my_topicz:topics"],
        env=base_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"sandbar-topics: topics app 'my_topicz:topics': could not import module 'my_topicz' "
        f"from {tmp_path}; run from your project's root or check the module name"
    )
