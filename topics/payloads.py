"""What the topics service may relay from one client to others.

WAMP's JSON serialization reads a string that begins with NUL (``"\\u0000..."``) as
base64 bytes. A msgpack client can send such a string; relayed as is, it makes
every JSON subscriber of the topic fail to decode the event and drop its
connection. So nothing the service publishes may hold one, keys included.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from topics.handlers import Reject


def nul_string_at(value: Any, where: str = "payload") -> str | None:
    """Where in ``value`` a string begins with NUL (e.g. ``payload['text']``), or None."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:  # no recursion: payloads may nest deeply
        item, path = stack.pop()
        if isinstance(item, str):
            if item.startswith("\x00"):
                return path
        elif isinstance(item, Mapping):
            for key, child in item.items():
                if isinstance(key, str) and key.startswith("\x00"):
                    return f"a key of {path}"
                stack.append((child, f"{path}[{key!r}]"))
        elif isinstance(item, (list, tuple)):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(item))
    return None


def check_relayable(payload: Any) -> None:
    """Raise :class:`Reject` (shown to the sender) if ``payload`` cannot reach JSON clients."""
    where = nul_string_at(payload)
    if where is not None:
        raise Reject(
            f"{where} begins with a NUL character (\\u0000), which WAMP's JSON clients read "
            "as binary data; remove it"
        )
