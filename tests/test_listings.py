"""``sandbar routes`` and ``sandbar topics`` list what a project declares, like ``flask routes``."""

from __future__ import annotations

import subprocess

from tests.support.procs import BIN, base_env

ROUTES = """
routes:
  comment.added: {topic: "article.{article_id}.comments", retain: true}
  user.pinged: {topic: "user.{user}", to_authids: user}
"""

TOPICS = """
from topics import Reject, TopicRouter
topics = TopicRouter()

@topics.topic("article.{article_id:int}.comments")
class Comments:
    def on_subscribe(self, session, article_id): ...
    def on_publish(self, session, payload, article_id): ...

topics.add_topic("cursor.{room}", client_publish=True)
topics.add_topic("feed", match="prefix")
"""


def _sandbar(tmp_path, *args: str) -> list[str]:
    result = subprocess.run(
        [str(BIN / "sandbar"), *args],
        env=base_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return [" ".join(line.split()) for line in result.stdout.splitlines()]


def test_routes_lists_event_topic_and_options(tmp_path):
    (tmp_path / "bridge.yaml").write_text(ROUTES)
    lines = _sandbar(tmp_path, "routes", "--bridge-config", "bridge.yaml")
    assert lines[0] == "Event Topic Options"
    assert lines[2:] == [
        "comment.added article.{article_id}.comments retain",
        "user.pinged user.{user} to_authids=user",
    ]


def test_topics_lists_pattern_match_hooks_and_how_clients_send(tmp_path):
    (tmp_path / "my_topics.py").write_text(TOPICS)
    lines = _sandbar(tmp_path, "topics", "--topics-app", "my_topics:topics")
    assert lines[0] == "Pattern Match Hooks Clients send"
    assert lines[2:] == [
        "article.{article_id:int}.comments exact on_subscribe, on_publish session.call (on_publish)",
        "cursor.{room} exact - publish (client_publish)",
        "feed prefix - -",
    ]
