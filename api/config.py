"""The API's settings: one typed object, from keyword arguments or ``SANDBAR_API_*`` variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator

from bridge.client import DEFAULT_ENDPOINT
from sandbar.config import StrictModel, validate_config
from sandbar.paths import RUN_DIR

ENV_PREFIX = "SANDBAR_API_"


class ApiConfig(StrictModel):
    database_url: str = f"sqlite:///{RUN_DIR / 'api.db'}"
    bridge_endpoint: str = DEFAULT_ENDPOINT
    max_request_bytes: int = Field(1024 * 1024, gt=0)
    max_title_length: int = Field(200, gt=0)
    max_body_length: int = Field(100_000, gt=0)
    # Origins whose pages may call the API (api/cors.py); the demo page's by default.
    cors_origins: tuple[str, ...] = ("http://127.0.0.1:8080", "http://localhost:8080")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        """``SANDBAR_API_CORS_ORIGINS="https://a.example, https://b.example"`` (empty: none)."""
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ApiConfig:
        """Read ``SANDBAR_API_DATABASE_URL`` etc.; an unknown ``SANDBAR_API_*`` name is an error."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            key.removeprefix(ENV_PREFIX).lower(): value
            for key, value in env.items()
            if key.startswith(ENV_PREFIX)
        }
        values.update(overrides)
        return validate_config(cls, values, source=f"{ENV_PREFIX}* settings")
