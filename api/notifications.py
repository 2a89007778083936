"""Per-user notifications: an event addressed to one user, on every tab they have open."""

from __future__ import annotations

import math
import threading
from typing import Any

from flask import Blueprint, current_app

from api.auth import USERNAME_RULE, User, current_user, is_username
from api.errors import ApiError, invalid, json_object, required_string, required_text
from api.push import transaction
from api.signals import user_notified
from topics.gate import RateLimiter

bp = Blueprint("notifications", __name__)


class SenderLimit:
    """``notify_rate`` notifications a second per sender, bursts up to ``notify_burst``.

    In memory, so each gunicorn worker counts for itself: a sender who spreads requests
    over every worker gets at most workers x the rate. A shared count would add a database
    write to every notification for a bound that is already finite.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets = RateLimiter(rate, burst)
        self._lock = threading.Lock()  # gthread workers run requests on several threads

    def check(self, sender: User) -> None:
        """Take one notification from ``sender``'s bucket, or refuse with 429 Retry-After."""
        with self._lock:
            allowed = self._buckets.allow(sender.account_id)
        if not allowed:
            retry = math.ceil(1 / self.rate)  # a whole token is back by then
            raise ApiError(
                429,
                "rate_limited",
                f"too many notifications: at most {self.rate:g} a second per sender "
                f"(bursts of {self.burst}); retry in {retry} s",
                headers={"Retry-After": str(retry)},
            )


@bp.record_once
def _make_limit(state: Any) -> None:
    settings = state.app.config["SANDBAR"]
    state.app.extensions["sandbar_notify_limit"] = SenderLimit(
        settings.notify_rate, settings.notify_burst
    )


@bp.post("/notifications")
def notify() -> tuple[dict[str, Any], int]:
    """``{"user": "alice", "text": "..."}`` → published on ``user.alice`` to alice only."""
    sender = current_user()
    data = json_object('{"user": ..., "text": ...}')
    user = required_string(data, "user")
    if not is_username(user):  # it names the topic, user.<user>
        raise invalid("user", f"must be a username: {USERNAME_RULE}")
    text = required_text(data, "text", 1000)
    current_app.extensions["sandbar_notify_limit"].check(sender)
    notification = {"user": user, "text": text.strip(), "from": sender.username}
    with transaction():
        user_notified.send(current_app._get_current_object(), notification=notification)  # type: ignore[attr-defined]
    return notification, 202
