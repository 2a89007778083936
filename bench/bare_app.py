"""The yardstick: the kit's ``POST /articles`` written as plain Flask, without any push.

What a competent Flask developer would write for the same work: check the signed token
(itsdangerous, the same secret and salt, so the kit's tokens work here), read the user's
token version, insert the article, commit, answer 201 with it as JSON. Same tables (the
kit's migrations made them), same SQLite tuning, run under the same gunicorn settings::

    SANDBAR_API_DATABASE_URL=sqlite:///api.db SANDBAR_API_TOKEN_SECRET=... \\
        gunicorn -w 2 --threads 4 -k gthread 'bench.bare_app:create_app()'
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from flask import Flask, abort, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    event,
    insert,
    select,
)

metadata = MetaData()
articles = Table(
    "articles",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("title", String(200)),
    Column("body", Text),
    Column("created_at", DateTime(timezone=True)),
)
users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64)),
    Column("token_version", Integer),
)
_INSERT = insert(articles).returning(*articles.c)
_VERSION = select(users.c.token_version).where(users.c.username == bindparam("username"))


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_app() -> Flask:
    app = Flask("bare")
    url = os.environ["SANDBAR_API_DATABASE_URL"]
    if url.startswith("postgresql://"):
        url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _tune_sqlite)
    tokens = URLSafeTimedSerializer(os.environ["SANDBAR_API_TOKEN_SECRET"], salt="sandbar.token")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/articles")
    def create_article() -> tuple[dict[str, Any], int, dict[str, str]]:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        try:
            claims = tokens.loads(token, max_age=12 * 3600)
        except BadSignature:
            abort(401)
        data = request.get_json()
        if not isinstance(data, dict) or not data.get("title") or "body" not in data:
            abort(400)
        with engine.begin() as conn:
            version = conn.execute(_VERSION, {"username": claims["u"]}).scalar()
            if scheme.lower() != "bearer" or version != claims["v"]:
                abort(401)
            row = conn.execute(
                _INSERT,
                {"title": data["title"], "body": data["body"], "created_at": datetime.now(UTC)},
            ).one()
        article = dict(row._mapping)
        article["created_at"] = article["created_at"].isoformat()
        return article, 201, {"Location": f"/articles/{article['id']}"}

    return app
