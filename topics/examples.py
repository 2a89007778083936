"""The example topics: a read-only article feed, chat rooms, and private per-user topics."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict

from topics.handlers import Reject
from topics.registry import TopicRouter
from topics.session import Session

topics = TopicRouter()


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ChatMessage(_Payload):
    channel: str
    text: str
    author: str | None
    at: int  # unix ms


class ChatWelcome(_Payload):
    channel: str
    members: int
    you: str | None


class ChatMember(_Payload):
    """Someone joined or left: who, and how many are in the room now."""

    channel: str
    member: str | None
    members: int


class ChatAnnouncement(_Payload):
    """Sent by the API or a backend job through the bridge (route ``chat.announcement``)."""

    channel: str
    text: str


CHAT_EVENTS = {
    "chat.message": ChatMessage,
    "chat.welcome": ChatWelcome,
    "chat.join": ChatMember,
    "chat.leave": ChatMember,
    "chat.announcement": ChatAnnouncement,
}


@topics.topic("articles")
class Articles:
    """New articles, published by the bridge. Anyone may listen; no client may publish."""


@topics.topic("chat.{channel:[a-z0-9][a-z0-9_-]{0,31}}", events=CHAT_EVENTS)
class Chat:
    """A chat room per channel: presence, a welcome for newcomers, checked messages."""

    event_name = "chat.message"
    max_length = 500

    async def on_subscribed(self, session: Session, channel: str) -> None:
        members = await session.subscriber_count()
        session.send(
            {"channel": channel, "members": members, "you": session.authid}, name="chat.welcome"
        )
        session.publish(
            {"channel": channel, "member": session.authid, "members": members},
            name="chat.join",
            exclude_me=True,
        )

    async def on_unsubscribe(self, session: Session, channel: str) -> None:
        members = await session.subscriber_count()
        session.publish(
            {"channel": channel, "member": session.authid, "members": members}, name="chat.leave"
        )

    def on_publish(self, session: Session, payload: Any, channel: str) -> dict[str, Any]:
        text = payload.get("text") if isinstance(payload, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise Reject("a chat message needs some text: call with [{text: '...'}]")
        text = text.strip()
        if len(text) > self.max_length:
            raise Reject(f"chat messages are limited to {self.max_length} characters")
        return {
            "channel": channel,
            "text": text,
            "author": session.authid,
            "at": time.time_ns() // 1_000_000,
        }


@topics.topic("user.{user_id}")
class UserTopic:
    """Private events for one user, on all of their tabs. Needs a signed-in session."""

    def on_subscribe(self, session: Session, user_id: str) -> None:
        if session.authmethod == "anonymous":
            raise Reject("sign in to receive private events")
        if session.authid != user_id:
            raise Reject("this topic belongs to another user")
