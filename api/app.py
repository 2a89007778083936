"""The Flask application factory."""

from __future__ import annotations

from typing import Any

from flask import Flask
from pydantic import SecretStr
from sqlalchemy import Engine

from api import articles, auth, events, notifications
from api.config import ApiConfig
from api.cors import allow_origins
from api.db import create_schema, make_engine, wait_for_database
from api.errors import register_error_handlers
from api.outbox import Outbox, OutboxSettings
from api.push import Push
from api.signals import article_created, auth_revoked, user_notified
from bridge.client import EventSender
from bridge.config import load_routes
from sandbar.secrets import require_secret


def create_app(config: ApiConfig | None = None, *, sender: EventSender | None = None) -> Flask:
    """Build the API. ``config`` defaults to ``ApiConfig.from_env()``."""
    config = config or ApiConfig.from_env()
    app = Flask("sandbar.api")
    app.config["SANDBAR"] = config
    app.config["MAX_CONTENT_LENGTH"] = config.max_request_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]

    engine = make_engine(config.database_url)
    # a worker gunicorn replaces while the database is down waits for it: one that failed
    # to boot would stop the whole server
    wait_for_database(engine, config.database_wait_seconds)
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

    app.register_blueprint(events.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(notifications.bp)
    secret = _secret(config.token_secret)
    app.extensions["sandbar_tokens"] = auth.Tokens(
        secret or require_secret("SANDBAR_API_TOKEN_SECRET", auth.DEV_TOKEN_SECRET),
        config.token_max_age,
    )
    push = Push(app, engine, sender=sender, outbox=_outbox(config, engine))
    push.forward(article_created, lambda article: article)
    push.forward(user_notified, lambda notification: notification)
    push.forward(auth_revoked)
    return app


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _outbox(config: ApiConfig, engine: Engine) -> Outbox | None:
    if config.delivery != "reliable":
        return None
    settings = OutboxSettings(
        bridge_endpoint=config.bridge_endpoint,
        curve_server_key=config.bridge_curve_server_key,
        curve_secret_key=_secret(config.bridge_curve_secret_key),
        lease_seconds=config.outbox_lease_seconds,
        retention_seconds=config.outbox_retention_seconds,
        retention_rows=config.outbox_retention_rows,
        prune_interval=config.outbox_prune_interval,
    )
    outbox = Outbox(engine, load_routes(config.routes_config), settings)
    outbox.relay.start()  # resends what earlier processes left unacknowledged
    return outbox
