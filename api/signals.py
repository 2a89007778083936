"""Domain events. Controllers send these; they never know about ZeroMQ or WAMP."""

from __future__ import annotations

from blinker import Namespace

events = Namespace()

#: Sent after an article is committed, with ``article=<dict>``.
article_created = events.signal("article.created")

#: Sent when a user's tokens were revoked (logout, account disabled), with ``user=<name>``.
auth_revoked = events.signal("auth.revoked")

#: Sent when someone notifies a user, with ``notification={"user", "text", "from"}``.
user_notified = events.signal("user.notified")
