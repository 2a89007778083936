"""One table of topic-rule checks, run through the in-process harness (topics.testing) and
against the real router + topics service (tests/test_topic_parity.py): the two must agree.

Each scenario is who (None: anonymous), what, where; the outcome is normalised to
``("allowed", None)``, ``("denied", reason)`` for subscribes and ``("ok", None)`` or
``(error URI, reason)`` for calls and publishes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

#: who signs in, and with which role (the API's accounts in the real run)
USERS = {"alice": "user", "bob": "user", "sam": "staff"}
#: the topics app both runs serve
APP = "tests.topics_app:topics"

Outcome = tuple[str, str | None]


@dataclass(frozen=True)
class Scenario:
    who: str | None
    action: Literal["subscribe", "call", "publish"]
    uri: str
    args: tuple[Any, ...] = ()
    match: Literal["exact", "prefix", "wildcard"] = "exact"

    def __str__(self) -> str:
        extra = f" {self.match}" if self.match != "exact" else ""
        return f"{self.who or 'anonymous'} {self.action}{extra} {self.uri} {list(self.args)}"


def _subscribes(who: str | None, *uris: str) -> list[Scenario]:
    return [Scenario(who, "subscribe", uri) for uri in uris]


SCENARIOS: list[Scenario] = [
    *_subscribes(
        None,
        "articles",
        "chat.general",
        "chat.Upper",
        "chat." + "x" * 40,
        "chat.general.extra",
        "whisper.open",
        "whisper.closed",
        "user.alice",
        "boom.x",
        "nothing.here",
        "sandbar.topics.list",
        "wamp.session.on_join",
        "feed",
    ),
    *_subscribes("alice", "user.alice", "user.bob", "chat.general", "articles"),
    *_subscribes("sam", "user.alice", "user.sam", "whisper.closed"),
    Scenario(None, "subscribe", "feed", match="prefix"),
    Scenario(None, "subscribe", "chat", match="prefix"),
    Scenario(None, "subscribe", "chat..x", match="wildcard"),
    Scenario("alice", "subscribe", "articles", match="prefix"),
    Scenario(None, "call", "chat.general", ({"text": "hi"},)),
    Scenario(None, "call", "chat.general", ({"text": "  "},)),
    Scenario(None, "call", "chat.general", ("just text",)),
    Scenario(None, "call", "chat.general", ({"text": "a"}, {"text": "b"})),
    Scenario(None, "call", "chat.general", ({"text": "x" * 501},)),
    Scenario(None, "call", "chat.Upper", ({"text": "hi"},)),
    Scenario("alice", "call", "chat.general", ({"text": "hello"},)),
    Scenario(None, "call", "articles", ({},)),
    Scenario(None, "call", "boom.y", ({"text": "x"},)),
    Scenario(None, "call", "relay.bogus", ({"mode": "bogus"},)),
    Scenario(None, "call", "user.alice", ({},)),
    Scenario(None, "call", "sandbar.authorize", ()),
    Scenario(None, "call", "sandbar.topics.list", ()),
    Scenario(None, "call", "wamp.session.list", ()),
    Scenario("alice", "call", "wamp.session.kill", ()),
    Scenario(None, "call", "explain.subscribe", ("user.bob",)),
    Scenario(None, "publish", "chat.general", ({"text": "direct"},)),
    Scenario(None, "publish", "articles", ({"title": "forged"},)),
    Scenario(None, "publish", "nothing.here", ({},)),
    Scenario(None, "publish", "cursor.room1", ({"x": 1},)),
    Scenario("alice", "publish", "cursor.readonly-1", ({"x": 1},)),
    Scenario(None, "publish", "whisper.open", ({},)),
]
