"""Domain events. Controllers send these; they never know about ZeroMQ or WAMP.

Each declares its payload's schema: the API refuses a payload that does not fit before
the transaction commits, the bridge refuses other senders' misfits, and ``sandbar
asyncapi`` documents them (README, Typed events and AsyncAPI).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from sandbar.events import Namespace

events = Namespace()


class Article(BaseModel):
    """An article as ``GET /articles/<id>`` returns it."""

    model_config = ConfigDict(extra="forbid", strict=True)  # a misspelt field is refused

    id: int
    title: str = Field(min_length=1)
    body: str
    created_at: str = Field(description="ISO 8601, UTC, e.g. 2026-12-01T12:00:00Z")


#: a JSON Schema dict works as well as a model
NOTIFICATION = {
    "type": "object",
    "properties": {
        "user": {"type": "string", "description": "who it is for (its topic is user.<user>)"},
        "text": {"type": "string", "minLength": 1},
        "from": {"type": "string", "description": "who sent it"},
    },
    "required": ["user", "text", "from"],
    "additionalProperties": False,
}


class Revoked(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    user: str


#: Sent after an article is committed, with ``article=<dict>``.
article_created = events.signal("article.created", schema=Article)

#: Sent when a user's tokens were revoked (logout, account disabled), with ``user=<name>``.
auth_revoked = events.signal("auth.revoked", schema=Revoked)

#: Sent when someone notifies a user, with ``notification={"user", "text", "from"}``.
user_notified = events.signal("user.notified", schema=NOTIFICATION)
