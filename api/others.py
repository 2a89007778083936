"""``toOthers``: a REST request may name its browser's WAMP session (header
``X-Sandbar-Session: <session id>.<proof>``) so the events it causes skip that session.

The API only reads the header and names the request's user beside it; the bridge checks
the proof (see sandbar/session_proof.py) and ignores, and counts, one that does not name
a session of that user. A header the API cannot use at all (malformed, or no signed-in
user) is ignored here, logged and counted.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Any

from flask import has_request_context, request

from api.auth import current_user
from api.errors import ApiError

log = logging.getLogger("sandbar.api.others")

HEADER = "X-Sandbar-Session"
_VALUE = re.compile(r"^([1-9][0-9]{0,15})\.([A-Za-z0-9_-]{22})$")
#: headers ignored by this process, by reason
ignored: Counter[str] = Counter()


def _ignore(reason: str) -> None:
    ignored[reason] += 1
    log.info("ignored %s header (%s; %d so far)", HEADER, reason, sum(ignored.values()))


def sender_session() -> dict[str, Any] | None:
    """``{"session", "user", "proof"}`` for the current request's events, or None."""
    if not has_request_context():
        return None
    value = request.headers.get(HEADER)
    if value is None:
        return None
    match = _VALUE.match(value.strip())
    if match is None:
        _ignore("malformed")
        return None
    if not request.headers.get("Authorization"):
        _ignore("anonymous")
        return None
    try:
        user = current_user()
    except ApiError:  # not a valid Bearer token (anonymous writes may be allowed)
        _ignore("bad_token")
        return None
    return {"session": int(match.group(1)), "user": user.username, "proof": match.group(2)}


def reader_sessions() -> set[int]:
    """The session ids a ``GET /events`` reader names as its own (comma-separated, each
    ``<id>`` or ``<id>.<proof>``): their own echoes are left out of what it is sent."""
    ids: set[int] = set()
    for part in request.headers.get(HEADER, "").split(",")[:16]:
        head = part.strip().split(".", 1)[0]
        if head.isdigit() and 0 < len(head) <= 16:
            ids.add(int(head))
    return ids
