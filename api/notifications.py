"""Per-user notifications: an event addressed to one user, on every tab they have open."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, request

from api.auth import current_user
from api.errors import ApiError, invalid, required_text
from api.push import transaction
from api.signals import user_notified

bp = Blueprint("notifications", __name__)


@bp.post("/notifications")
def notify() -> tuple[dict[str, Any], int]:
    """``{"user": "alice", "text": "..."}`` → published on ``user.alice`` to alice only."""
    sender = current_user()
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", 'send JSON: {"user": ..., "text": ...}')
    user = data.get("user")
    if not isinstance(user, str) or not user:
        raise invalid("user", "is required")
    text = required_text(data, "text", 1000)
    notification = {"user": user, "text": text.strip(), "from": sender.username}
    with transaction():
        user_notified.send(current_app._get_current_object(), notification=notification)  # type: ignore[attr-defined]
    return notification, 202
