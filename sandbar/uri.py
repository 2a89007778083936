"""WAMP URI rules shared by the bridge's topic templates and the topic registry."""

from __future__ import annotations

import re

# Patterns are used with fullmatch: ``$`` would also match before a trailing newline.
# One URI component: what Crossbar's loose URI check accepts, minus the empty string.
COMPONENT = re.compile(r"[^\s.#]+")
# Event names and literal URI parts we declare ourselves: lowercase, digits, _ and -.
NAME_COMPONENT = re.compile(r"[a-z0-9_\-]+")


def check_uri(uri: str) -> str:
    """Return ``uri`` if it is a valid, non-reserved WAMP URI; else raise ValueError."""
    parts = uri.split(".")
    if not uri or not all(COMPONENT.fullmatch(part) for part in parts):
        raise ValueError(
            f"'{uri}' is not a valid WAMP URI: use dot-separated parts without spaces or '#', "
            "e.g. 'chat.general'"
        )
    if parts[0] == "wamp":
        raise ValueError(f"'{uri}' is reserved: URIs starting with 'wamp.' belong to the router")
    return uri


def check_component(value: str) -> str:
    """Return ``value`` if it can stand as one URI component (no dots, spaces or '#')."""
    if not COMPONENT.fullmatch(value):
        raise ValueError(f"'{value}' cannot be part of a topic URI (no dots, spaces or '#')")
    return value


def check_name(name: str, what: str = "name") -> str:
    """Event names and literal pattern parts: dot-separated ``[a-z0-9_-]`` words."""
    if not name or not all(NAME_COMPONENT.fullmatch(part) for part in name.split(".")):
        raise ValueError(
            f"'{name}' is not a valid {what}: use lowercase dot-separated words "
            "of a-z, 0-9, '_' and '-', e.g. 'article.created'"
        )
    return name
