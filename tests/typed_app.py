"""An API with one buggy endpoint: it saves an article, then emits ``article.created``
without the ``body`` its schema requires. The kit must refuse it before the commit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Flask, current_app
from sqlalchemy import insert

from api.app import create_app as kit_app
from api.config import ApiConfig
from api.db import articles
from api.push import transaction
from api.signals import article_created


def create_app(config: ApiConfig) -> Flask:
    app = kit_app(config)

    @app.post("/buggy-articles")
    def buggy() -> tuple[dict[str, Any], int]:
        with transaction() as conn:
            row = conn.execute(
                insert(articles).returning(articles.c.id),
                {"title": "buggy", "body": "b", "created_at": datetime.now(UTC)},
            ).one()
            article = {"id": row.id, "title": "buggy", "created_at": "2026-12-01T12:00:00Z"}
            article_created.send(current_app._get_current_object(), article=article)  # type: ignore[attr-defined]
        return article, 201

    return app
