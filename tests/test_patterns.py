"""Topic patterns and the registry: compiled and checked when declared (pure functions)."""

from __future__ import annotations

import re

import pytest

from topics.patterns import PatternError, TopicPattern
from topics.registry import TopicRouter


def test_match_and_build_roundtrip():
    pattern = TopicPattern.compile("user.{id:int}.{box:[a-z]+}")
    assert pattern.match("user.42.inbox") == {"id": 42, "box": "inbox"}
    assert pattern.match("user.x.inbox") is None
    assert pattern.match("user.42.INBOX") is None
    assert pattern.match("user.42") is None
    assert pattern.build(id=42, box="inbox") == "user.42.inbox"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("chat.{a}.{a}", "parameter 'a' appears twice"),
        ("chat.x{a}", "mixes text and a parameter"),
        ("chat.{a:[}", "bad regex for 'a'"),
        ("Chat Room", "not a valid URI part"),
        ("wamp.session", "belong to the router"),
        ("", "must be a non-empty string"),
    ],
)
def test_bad_patterns_raise_at_declaration_quoting_the_pattern(source, message):
    with pytest.raises(PatternError, match=message) as info:
        TopicRouter().add_topic(source, object())
    assert repr(source)[1:-1] in str(info.value) or source == ""


def test_registry_decorator_include_duplicates_and_freeze():
    chat = TopicRouter()

    @chat.topic("{channel}")
    class Room:
        pass

    app = TopicRouter()
    app.add_topic("chat.lobby", object())
    app.include(chat, prefix="chat")
    topic, params = app.match("chat.general")  # type: ignore[misc]
    assert isinstance(topic.handler, Room) and params == {"channel": "general"}
    assert app.match("chat.lobby")[0].name == "chat.lobby"  # type: ignore[index]
    with pytest.raises(PatternError, match=re.escape("'chat.lobby' is already declared")):
        app.add_topic("chat.lobby", object())
    app.freeze()
    with pytest.raises(RuntimeError, match="cannot declare 'late': the topics service is running"):
        app.add_topic("late", object())
