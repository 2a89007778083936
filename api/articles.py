"""The example domain: articles. Persist, then announce; nothing here knows about push."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app
from sqlalchemy import Row, insert, select

from api.auth import login_required
from api.db import articles
from api.errors import MAX_INTEGER, ApiError, invalid, json_object, query_int, required_text
from api.push import transaction
from api.signals import article_created

bp = Blueprint("articles", __name__)
_INSERT_ARTICLE = insert(articles).returning(*articles.c)  # built once, run per POST


def _as_dict(row: Row[Any]) -> dict[str, Any]:
    article = dict(row._mapping)
    created: datetime = article["created_at"]
    if created.tzinfo is None:  # SQLite stores naive timestamps; we write UTC
        created = created.replace(tzinfo=UTC)
    article["created_at"] = created.isoformat().replace("+00:00", "Z")
    return article


@bp.post("/articles")
@login_required
def create_article() -> tuple[dict[str, Any], int, dict[str, str]]:
    settings = current_app.config["SANDBAR"]
    data = json_object('{"title": ..., "body": ...}')
    title = required_text(data, "title", settings.max_title_length).strip()
    body = required_text(data, "body", settings.max_body_length)
    unknown = sorted(set(data) - {"title", "body"})
    if unknown:
        raise invalid(unknown[0], "unknown field; send only 'title' and 'body'")
    with transaction() as conn:  # the article and its event commit together
        row = conn.execute(
            _INSERT_ARTICLE, {"title": title, "body": body, "created_at": datetime.now(UTC)}
        ).one()
        article = _as_dict(row)
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        article_created.send(app, article=article)
    return article, 201, {"Location": f"/articles/{article['id']}"}


@bp.get("/articles")
def list_articles() -> dict[str, Any]:
    limit = query_int("limit", 50, 500, "must be an integer from 1 to 500", low=1)
    with current_app.extensions["sandbar_db"].connect() as conn:
        rows = conn.execute(select(articles).order_by(articles.c.id.desc()).limit(limit))
        return {"articles": [_as_dict(row) for row in rows]}


@bp.get("/articles/<int:article_id>")
def get_article(article_id: int) -> dict[str, Any]:
    if article_id > MAX_INTEGER:
        raise invalid("id", f"must be an article id, at most {MAX_INTEGER}")
    with current_app.extensions["sandbar_db"].connect() as conn:
        row = conn.execute(select(articles).where(articles.c.id == article_id)).one_or_none()
    if row is None:
        raise ApiError(404, "not_found", f"article {article_id} does not exist")
    return _as_dict(row)
