"""The example topics the demo uses: a read-only article feed and chat channels."""

from __future__ import annotations

from topics.registry import TopicRouter

topics = TopicRouter()


@topics.topic("articles")
class Articles:
    """New articles, published by the bridge. Browsers may only listen."""


@topics.topic("chat.{channel}")
class Chat:
    """One chat room per channel."""
