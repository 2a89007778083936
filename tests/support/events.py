"""Payloads that fit the shipped events' schemas (api/signals.py), for senders other than the API."""

from __future__ import annotations

from typing import Any


def article(title: str, id: int = 1, body: str = "b") -> dict[str, Any]:
    """An ``article.created`` payload: the bridge refuses one missing a field."""
    return {"id": id, "title": title, "body": body, "created_at": "2026-12-01T12:00:00Z"}
