"""Topics for who-may-send tests: rooms that refuse some subscribers, handled and direct,
with and without ``write_only_senders``; a probe that shows topic code's view of a session;
and the shipped examples (chat)."""

from __future__ import annotations

from typing import Any

from topics.examples import topics as examples
from topics.handlers import Reject
from topics.registry import TopicRouter
from topics.session import Session

topics = TopicRouter()
topics.include(examples)


def staff_only(session: Session, name: str) -> None:
    if name.startswith("staff-") and session.authrole != "staff":
        raise Reject("staff only")


@topics.topic("room.{name}")
class Room:
    """The README's room: handled messages, staff-only rooms."""

    event_name = "room.message"
    on_subscribe = staticmethod(staff_only)

    def on_publish(self, session: Session, payload: Any, name: str) -> dict[str, Any]:
        return {"text": str(payload.get("text", "")), "author": session.authid}


@topics.topic("board.{name}", client_publish=True)
class Board:
    """Direct publishes (router fan-out), staff-only boards."""

    on_subscribe = staticmethod(staff_only)


@topics.topic("inbox.{name}", write_only_senders=True)
class Inbox:
    """Anyone may write (a handled message), only staff may read."""

    def on_subscribe(self, session: Session, name: str) -> None:
        raise Reject("staff only")

    def on_publish(self, session: Session, payload: Any, name: str) -> Any:
        return payload


@topics.topic("dropbox.{name}", client_publish=True, write_only_senders=True)
class Dropbox:
    """Anyone may publish directly, only staff may read."""

    def on_subscribe(self, session: Session, name: str) -> None:
        raise Reject("staff only")


@topics.topic("refusing.{name}")
class Refusing:
    """on_subscribe answers False: a sender is refused with the sender rule's reason."""

    def on_subscribe(self, session: Session, name: str) -> bool:
        return False

    def on_publish(self, session: Session, payload: Any, name: str) -> Any:
        return payload


@topics.topic("crash.{name}")
class Crash:
    """Anyone may subscribe and send; on_publish raises."""

    def on_publish(self, session: Session, payload: Any, name: str) -> Any:
        raise RuntimeError("publish hook exploded")


@topics.topic("echo.{name}")
class Echo:
    """Relays the client's message as is, and what topic code sees of the sender."""

    def on_publish(self, session: Session, payload: Any, name: str) -> Any:
        return {"payload": payload, "authextra": dict(session.authextra)}
