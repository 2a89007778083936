"""Arguments of the inspector's procedures, checked: whatever a caller sends (a staff
page with a bug, a script) gets ``sandbar.error.invalid_argument`` naming the argument
and what it takes, never an exception in the service or an unbounded answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from autobahn.wamp.exception import ApplicationError

from topics.authorizer import ERROR_INVALID

#: no answer lists more than this many items, whatever ``limit`` asks for
MAX_LIMIT = 1000
#: longer authids exist nowhere (usernames are at most 64 characters; backends are short)
MAX_AUTHID = 256


def invalid(reason: str) -> ApplicationError:
    return ApplicationError(ERROR_INVALID, reason)


def arguments(
    procedure: str, args: Sequence[Any], kwargs: dict[str, Any], names: Sequence[str]
) -> dict[str, Any]:
    """``args`` and ``kwargs`` as one dict over ``names`` (positionals in that order);
    extra positionals or unknown keywords are refused, naming what the procedure takes."""
    takes = ", ".join(names) or "no arguments"
    if len(args) > len(names):
        raise invalid(f"{procedure} takes {takes}; got {len(args)} positional arguments")
    given = dict(zip(names, args, strict=False))
    for name, value in kwargs.items():
        if name not in names:
            shown = name if len(name) <= 40 else name[:40] + "..."
            raise invalid(f"{procedure} takes {takes}; not '{shown}'")
        if name in given:
            raise invalid(f"{procedure}: '{name}' given twice")
        given[name] = value
    return given


def limit_of(value: Any, default: int) -> int:
    """A ``limit`` argument: an integer from 1 to MAX_LIMIT (None: ``default``)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise invalid(f"limit must be an integer from 1 to {MAX_LIMIT}, not {_shown(value)}")
    return value


def authid_of(value: Any) -> str | None:
    """An ``authid`` filter: None or a string of 1 to MAX_AUTHID characters."""
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_AUTHID:
        raise invalid(
            f"authid must be a string of 1 to {MAX_AUTHID} characters, not {_shown(value)}"
        )
    return value


def _shown(value: Any) -> str:
    """A short description of a refused value (it may be huge)."""
    if isinstance(value, str):
        return f"a string of {len(value)} characters" if len(value) > 40 else repr(value)
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return str(value) if abs(value) < 10**12 else f"an integer of {len(str(value))} digits"
    return f"a {type(value).__name__}"
