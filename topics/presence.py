"""Who is on a topic: one entry per user however many tabs, and a declared part of authextra.

A topic declares presence with ``topic(pattern, presence=("user",))``: the keys of
authextra that others may see. The leader replica keeps the list from the lifecycle
events, publishes ``presence.join`` when a user's first session subscribes and
``presence.leave`` when their last one leaves, and answers ``presence.get``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from topics.session import SessionInfo

#: what a browser calls for the list: ``session.call("presence.get", [topic_uri])``
PRESENCE_PROCEDURE = "presence.get"
JOIN, LEAVE = "presence.join", "presence.leave"
#: authextra keys that are credentials, or say when one ends: never shown to others
SECRET_KEYS = ("session_proof", "expires_at")
SECRET_WORDS = ("token", "proof", "secret", "password", "ticket", "key", "signature")


def check_keys(name: str, keys: Sequence[str] | None) -> tuple[str, ...] | None:
    """The declared authextra keys, refused at declaration if one could carry a credential."""
    if keys is None:
        return None
    if isinstance(keys, str) or not all(isinstance(k, str) and k for k in keys):
        raise ValueError(
            f"topic '{name}': presence takes a tuple of authextra keys, e.g. presence=('user',)"
        )
    for key in keys:
        if key in SECRET_KEYS or any(word in key.lower() for word in SECRET_WORDS):
            raise ValueError(
                f"topic '{name}': presence may not show authextra key '{key}' "
                "(it is or may hold a credential); show only harmless keys such as 'user'"
            )
    return tuple(dict.fromkeys(keys))


class Presence:
    """Per topic URI: each user's sessions, and what the others see of them."""

    def __init__(self) -> None:
        self._sessions: dict[str, dict[str, set[int]]] = {}  # uri → authid → session ids
        self._shown: dict[str, dict[str, dict[str, Any]]] = {}  # uri → authid → entry
        self._owner: dict[tuple[str, int], str] = {}  # (uri, session id) → authid

    def join(self, uri: str, info: SessionInfo, keys: Sequence[str]) -> dict[str, Any] | None:
        """Add a session; the user's entry if this is their first session here, else None."""
        authid = info.authid or f"session-{info.id}"
        users = self._sessions.setdefault(uri, {})
        tabs = users.setdefault(authid, set())
        first = not tabs
        tabs.add(info.id)
        self._owner[(uri, info.id)] = authid
        if not first:
            return None
        extra = {k: info.authextra[k] for k in keys if k in info.authextra}
        entry = {"authid": authid, "extra": extra}
        self._shown.setdefault(uri, {})[authid] = entry
        return entry

    def leave(self, uri: str, session_id: int) -> str | None:
        """Remove a session; the user's authid if it was their last session here, else None."""
        authid = self._owner.pop((uri, session_id), None)
        users = self._sessions.get(uri, {})
        if authid is None or authid not in users:
            return None
        users[authid].discard(session_id)
        if users[authid]:
            return None
        del users[authid]
        self._shown[uri].pop(authid, None)
        if not users:
            self._sessions.pop(uri, None)
            self._shown.pop(uri, None)
        return authid

    def clear(self) -> None:
        """Forget everyone: the router connection is gone, and with it every subscription."""
        self._sessions.clear()
        self._shown.clear()
        self._owner.clear()

    def list(self, uri: str) -> list[dict[str, Any]]:
        """Who is on ``uri``, one entry per user, in the order they came."""
        return [dict(entry) for entry in self._shown.get(uri, {}).values()]
