"""The Flask application factory."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, cast

from flask import Flask
from pydantic import SecretStr
from sqlalchemy import Engine

from api import ages, articles, auth, events, inspector, notifications, tracing
from api.config import ApiConfig
from api.cors import allow_origins
from api.db import create_schema, make_engine, wait_for_database
from api.errors import register_error_handlers
from api.metrics import ApiMetrics
from api.outbox import Outbox, OutboxSettings, backlog
from api.push import Push
from api.signals import article_created, auth_revoked, user_notified
from bridge.client import EventSender
from bridge.config import load_routes
from bridge.schemas import load_event_schemas
from sandbar.asyncapi import generate
from sandbar.config import ConfigError
from sandbar.imports import load_object
from sandbar.schemas import EventSchemas
from topics.registry import load_app

DEFAULT_FACTORY = "api.app:create_app"


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

    meters = app.extensions["sandbar_metrics"] = ApiMetrics()
    meters.instrument(app)
    tracing.instrument(app)
    register_error_handlers(app)
    allow_origins(app, config.cors_origins)
    app.register_blueprint(articles.bp)

    @app.get("/asyncapi.json")
    def asyncapi() -> dict[str, Any]:
        """The AsyncAPI 3.0 document (sandbar/asyncapi.py), made once per worker."""
        if "sandbar_asyncapi" not in app.extensions:
            app.extensions["sandbar_asyncapi"] = generate(config.routes_config, config.topics_app)
        return dict(app.extensions["sandbar_asyncapi"])

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        """The database answers; and the outbox backlog, which an orchestrator's probe and
        the inspector's ``inspect.services`` (that holds no staff token) want to see."""
        with engine.connect() as conn:
            waiting = backlog(conn)
        return {"status": "ok", "outbox": {**waiting, "delivery": config.delivery}}

    app.register_blueprint(events.bp)
    app.register_blueprint(ages.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(notifications.bp)
    app.register_blueprint(inspector.bp)
    app.extensions["sandbar_tokens"] = auth.Tokens(config.signing_secret(), config.token_max_age)
    push = Push(app, engine, sender=sender, outbox=_outbox(config, engine, meters))
    push.forward(article_created, lambda article: article)
    push.forward(user_notified, lambda notification: notification)
    push.forward(auth_revoked)
    check_routes(app)
    load_app(config.topics_app)  # GET /events asks its on_subscribe: fail now, not on a request
    return app


def load_factory(spec: str) -> Callable[[ApiConfig], Flask]:
    """Your own app factory (``my_app:create_app``, taking the ApiConfig) for ``sandbar-api``."""
    factory = load_object(spec, "API app factory", DEFAULT_FACTORY, inspect.isfunction)
    if not callable(factory):
        raise ConfigError(
            f"API app factory '{spec}' is a {type(factory).__name__}, not a function; point at "
            "a function that takes the ApiConfig and returns the Flask app, like create_app"
        )
    return cast(Callable[[ApiConfig], Flask], factory)


def check_routes(app: Flask) -> None:
    """Refuse to start, rather than fail each request, when a forwarded event has no route.
    ``sandbar-api`` runs it again on the app your factory returns."""
    config: ApiConfig = app.config["SANDBAR"]
    routes = load_routes(config.routes_config)
    push: Push = app.extensions["sandbar_push"]
    for name in push.forwarded:
        if name not in routes:
            raise ConfigError(
                f"event '{name}' is forwarded (push.forward) but {config.routes_config} has no "
                f"route for it: add 'routes: {{{name}: {{topic: <topic URI>}}}}' there "
                "(see README, Bridge configuration)"
            )
    check_schemas(push, load_event_schemas(config.routes_config, config.topics_app), config)


def check_schemas(push: Push, bridge: EventSchemas, config: ApiConfig) -> None:
    """The bridge must check the schemas the API checks, so that another sender's misfit is
    refused too; a forwarded event whose schema only a topic declares is checked here too."""
    for name, schema in push.schemas:
        known = bridge.get(name)
        if known is None or known.json_schema != schema.json_schema:
            problem = "does not know it" if known is None else "knows another one"
            raise ConfigError(
                f"event '{name}' has a payload schema (its signal's schema=) but the bridge "
                f"{problem}: list the signal's Namespace under 'schemas' in "
                f"{config.routes_config}, e.g. 'schemas: [api.signals:events]' "
                "(see README, Typed events and AsyncAPI)"
            )
    for name in push.forwarded:
        only_bridge = bridge.get(name)
        if only_bridge is not None and name not in push.schemas:
            push.schemas.declare(name, only_bridge)


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _outbox(config: ApiConfig, engine: Engine, meters: ApiMetrics) -> Outbox | None:
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
    outbox = Outbox(engine, load_routes(config.routes_config), settings, meters)
    outbox.relay.start()  # resends what earlier processes left unacknowledged
    return outbox
