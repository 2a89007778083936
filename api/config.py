"""The API's settings: one typed object, from keyword arguments or ``SANDBAR_API_*`` variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from bridge.client import DEFAULT_ENDPOINT, EventSender
from bridge.keys import find_sender_keys
from sandbar.config import ConfigError, StrictModel, validate_config
from sandbar.paths import ROOT, RUN_DIR
from sandbar.secrets import DEV_TOKEN_SECRET, TOKEN_SECRET_VAR, require_secret
from topics.registry import app_spec

ENV_PREFIX = "SANDBAR_API_"
#: read by the server (api/serve.py), not part of the app's settings
SERVER_VARS = frozenset(
    {
        "SANDBAR_API_HOST",
        "SANDBAR_API_PORT",
        "SANDBAR_API_WORKERS",
        "SANDBAR_API_THREADS",
        "SANDBAR_API_APP",
        "SANDBAR_API_METRICS_PORT",  # read by sandbar-api's gunicorn master (api/serve.py)
        "SANDBAR_API_METRICS_DIR",
    }
)


class ApiConfig(StrictModel):
    #: sqlite:///path (the default, one host) or postgresql://user:password@host/db
    database_url: str = f"sqlite:///{RUN_DIR / 'api.db'}"
    #: how long the server waits at start for a database that is not reachable yet
    database_wait_seconds: float = Field(60.0, ge=0)
    bridge_endpoint: str = DEFAULT_ENDPOINT
    #: CURVE, which the bridge requires: a sender key file (bridge/keys.py; `sandbar up` hands
    #: over its own), else the keys themselves: the bridge's public key and ours, secret.
    #: Neither given: $SANDBAR_SENDER_KEYS, else .sandbar/curve/api.keys if it exists.
    bridge_keys: Path | None = None
    bridge_curve_server_key: str | None = None
    bridge_curve_secret_key: SecretStr | None = None
    #: "reliable": transactional outbox, resent until the bridge acknowledges;
    #: "fire_and_forget": sent once after commit, not tracked.
    delivery: Literal["reliable", "fire_and_forget"] = "reliable"
    #: the bridge YAML whose ``routes`` decide each event's topic (for per-topic seq)
    routes_config: Path = ROOT / "config" / "bridge.yaml"
    #: the TopicRouter whose on_subscribe also guards catch-up (GET /events); by default
    #: the topics service's own, SANDBAR_TOPICS_APP
    topics_app: str = Field(default_factory=app_spec)
    outbox_lease_seconds: float = Field(3.0, gt=0)
    outbox_retention_seconds: float = Field(24 * 3600.0, gt=0)
    outbox_retention_rows: int = Field(100_000, gt=0)
    outbox_prune_interval: float = Field(60.0, gt=0)
    max_catch_up: int = Field(500, gt=0)
    #: POST endpoints need a Bearer token; reading stays public
    require_login_to_write: bool = True
    #: signs tokens; required outside development mode (SANDBAR_API_TOKEN_SECRET)
    token_secret: SecretStr | None = None
    token_max_age: int = Field(12 * 3600, gt=0)
    #: POST /notifications per sender: rate a second, bursts up to burst; each gunicorn
    #: worker counts on its own, so a sender gets at most workers x these
    notify_rate: float = Field(2.0, gt=0)
    notify_burst: int = Field(20, gt=0)
    max_request_bytes: int = Field(1024 * 1024, gt=0)
    max_title_length: int = Field(200, gt=0)
    max_body_length: int = Field(100_000, gt=0)
    # Origins whose pages may call the API (api/cors.py); the demo page's by default.
    cors_origins: tuple[str, ...] = ("http://127.0.0.1:8080", "http://localhost:8080")

    @model_validator(mode="before")
    @classmethod
    def _read_bridge_keys(cls, data: Any) -> Any:
        """Fill the two key fields from ``bridge_keys`` (or the default key file)."""
        if not isinstance(data, dict) or data.get("bridge_curve_server_key"):
            return data
        path = data.get("bridge_keys") or None  # "" (an empty variable) means not given
        try:
            keys = find_sender_keys(path)
        except ConfigError as exc:
            raise ValueError(f"bridge_keys: {exc}") from None
        if keys is None:
            return {**data, "bridge_keys": None}
        return {
            **data,
            "bridge_keys": path,
            "bridge_curve_server_key": keys.server_key,
            "bridge_curve_secret_key": keys.secret_key,
        }

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        """Refuse at load a URL no backend serves (api/backends.py names the fix)."""
        from api.backends import parse_url

        parse_url(value)
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        """``SANDBAR_API_CORS_ORIGINS="https://a.example, https://b.example"`` (empty: none)."""
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    def signing_secret(self) -> str:
        """The token secret, refused when missing, weak or published (unless in development
        mode): with a known secret anyone can sign tokens for any user."""
        value = self.token_secret.get_secret_value() if self.token_secret is not None else None
        return require_secret(TOKEN_SECRET_VAR, DEV_TOKEN_SECRET, value=value)

    def event_sender(self) -> EventSender:
        """The fire-and-forget sender these settings describe (endpoint and CURVE keys)."""
        secret = self.bridge_curve_secret_key
        return EventSender(
            self.bridge_endpoint,
            curve_server_key=self.bridge_curve_server_key,
            curve_secret_key=secret.get_secret_value() if secret is not None else None,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ApiConfig:
        """Read ``SANDBAR_API_DATABASE_URL`` etc.; an unknown ``SANDBAR_API_*`` name is an error."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            key.removeprefix(ENV_PREFIX).lower(): value
            for key, value in env.items()
            if key.startswith(ENV_PREFIX) and key not in SERVER_VARS
        }
        values.setdefault("topics_app", app_spec(env))  # the one setting, SANDBAR_TOPICS_APP
        values.update(overrides)
        return validate_config(cls, values, source=f"{ENV_PREFIX}* settings")
