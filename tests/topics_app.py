"""The topics the tests run: the shipped examples plus a few that exercise edge cases."""

from __future__ import annotations

from typing import Any

from topics.examples import topics as examples
from topics.handlers import Reject
from topics.registry import TopicRouter
from topics.session import Session

topics = TopicRouter()
topics.include(examples)


@topics.topic("boom.{x}")
class Boom:
    """Every hook raises: the service must contain it."""

    def on_subscribe(self, session: Session, x: str) -> None:
        raise RuntimeError("subscribe hook exploded")

    def on_publish(self, session: Session, payload: Any, x: str) -> Any:
        raise RuntimeError("publish hook exploded")


@topics.topic("feed", match="prefix")
class Feed:
    """The one topic that explicitly allows a prefix subscription ("feed" + anything)."""


@topics.topic("cursor.{room}", client_publish=True)
class Cursor:
    """Clients publish directly (router fan-out), but only in rooms not marked read-only."""

    def can_publish(self, session: Session, room: str) -> None:
        if room.startswith("readonly"):
            raise Reject("this room is read-only")


@topics.topic("whisper.{room}")
def whisper(session: Session, room: str) -> bool:
    """A plain function handler is on_subscribe: allow only room 'open'."""
    return room == "open"


@topics.topic("relay.{mode}")
class Relay:
    """Topic code addressing events: to an authid (all its tabs), to sessions, to all but me."""

    def on_publish(self, session: Session, payload: Any, mode: str) -> None:
        inbox = "relay.inbox"
        if mode == "authid":
            topics.publish(inbox, payload, authids=[payload["to"]], name="relay")
        elif mode == "sessions":
            topics.publish(inbox, payload, sessions=[int(payload["to"])], name="relay")
        elif mode == "others":
            topics.publish(inbox, payload, exclude_sessions=[session.id], name="relay")
        else:
            raise Reject(f"unknown mode '{mode}'")
        # Returning None: the service publishes nothing more.


@topics.topic("settings.echo")
class SettingsEcho:
    """Topic code reads the service's settings through its session, not the environment."""

    def on_subscribed(self, session: Session) -> None:
        session.send({"api_url": session.settings["api_url"]}, name="settings")


@topics.topic("lobby.{room}", presence=("user",))
class Lobby:
    """Presence: who is here, one entry per user, showing authextra's ``user`` only.
    Rooms named ``closed-*`` refuse everyone, so nobody may read their presence either."""

    def on_subscribe(self, session: Session, room: str) -> None:
        if room.startswith("closed"):
            raise Reject("this lobby is closed")

    def on_subscribed(self, session: Session, room: str) -> None:
        session.send({"here": session.presence()}, name="lobby.welcome")


@topics.topic("whoami")
class WhoAmI:
    """Tells a subscriber who the topics service takes it for (tests/test_topics.py: the
    same with and without proxy workers in front of the router)."""

    def on_subscribed(self, session: Session) -> None:
        extra = {key: value for key, value in session.authextra.items() if key != "session_proof"}
        session.send(
            {
                "authid": session.authid,
                "authrole": session.authrole,
                "authmethod": session.authmethod,
                "authextra": extra,
                "session_proof": "session_proof" in session.authextra,
                "peer": session.transport.get("peer"),
            },
            name="whoami",
        )
