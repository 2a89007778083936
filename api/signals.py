"""Domain events. Controllers send these; they never know about ZeroMQ or WAMP."""

from __future__ import annotations

from blinker import Namespace

events = Namespace()

#: Sent after an article is committed, with ``article=<dict>``.
article_created = events.signal("article.created")
