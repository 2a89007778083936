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
        ("wamp.session", "is reserved"),
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


@pytest.mark.parametrize(
    "uri",
    [
        "",
        ".",
        "chat.",
        ".general",
        "chat..general",
        "chat.gen eral",
        "chat.gen#eral",
        "chat.ĝenéral",  # unicode is not in the channel's [a-z0-9_-]
        "chat.general\n",
        "chat." + "a" * 100_000,
        "CHAT.general",
    ],
)
def test_hostile_uris_never_match(uri):
    pattern = TopicPattern.compile("chat.{channel:[a-z0-9][a-z0-9_-]{0,31}}")
    assert pattern.match(uri) is None


def test_default_parameter_takes_one_component_and_nothing_longer_than_the_cap():
    pattern = TopicPattern.compile("room.{name}")
    assert pattern.match("room.café") == {"name": "café"}
    assert pattern.match("room.a.b") is None
    assert pattern.match("room." + "x" * 600) is None  # over MAX_URI_LENGTH


def test_int_converter_and_literal_topics():
    pattern = TopicPattern.compile("user.{id:int}")
    assert pattern.match("user.-7") == {"id": -7}
    assert pattern.match("user.7e3") is None
    with pytest.raises(PatternError, match="must name at least one URI part"):
        TopicRouter().add_topic("..", object(), match="wildcard")
    router = TopicRouter()
    router.add_topic("feed", object(), match="prefix")
    assert router.match("feed", "prefix") is not None
    assert router.match("feed") is None  # an exact subscription is another thing


@pytest.mark.parametrize("namespace", ["wamp", "sandbar", "explain"])
def test_reserved_namespaces_cannot_be_declared(namespace):
    with pytest.raises(PatternError, match="is reserved"):
        TopicRouter().add_topic(f"{namespace}.x", object())


def test_conflicting_publish_declarations_fail_at_declaration():
    class Both:
        def on_publish(self, session, payload):
            return payload

    class CheckOnly:
        def can_publish(self, session):
            return True

    with pytest.raises(PatternError, match="exclude each other"):
        TopicRouter().add_topic("a", Both, client_publish=True)
    with pytest.raises(PatternError, match="can_publish needs client_publish=True"):
        TopicRouter().add_topic("a", CheckOnly)
