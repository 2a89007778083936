"""The Flask application factory."""

from __future__ import annotations

from typing import Any

from flask import Flask

from api import articles
from api.config import ApiConfig
from api.cors import allow_origins
from api.db import create_schema, make_engine
from api.errors import register_error_handlers
from api.push import Push
from api.signals import article_created
from bridge.client import EventSender


def create_app(config: ApiConfig | None = None, *, sender: EventSender | None = None) -> Flask:
    """Build the API. ``config`` defaults to ``ApiConfig.from_env()``."""
    config = config or ApiConfig.from_env()
    app = Flask("sandbar.api")
    app.config["SANDBAR"] = config
    app.config["MAX_CONTENT_LENGTH"] = config.max_request_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]

    engine = make_engine(config.database_url)
    create_schema(engine)
    app.extensions["sandbar_db"] = engine

    register_error_handlers(app)
    allow_origins(app, config.cors_origins)
    app.register_blueprint(articles.bp)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return {"status": "ok"}

    push = Push(app, sender)
    push.forward(article_created, lambda article: article)
    return app
