"""The shared backend secret, and the one place a development default is allowed."""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping

from sandbar.config import ConfigError

DEV_SECRET = "sandbar-development-secret-not-for-production"
SECRET_VAR = "SANDBAR_BACKEND_SECRET"
DEV_VAR = "SANDBAR_DEV"

log = logging.getLogger("sandbar.secrets")


def dev_mode(env: MutableMapping[str, str] | None = None) -> bool:
    """True when the user explicitly asked for development mode (``SANDBAR_DEV=1``)."""
    env = os.environ if env is None else env
    return env.get(DEV_VAR, "").strip().lower() in {"1", "true", "yes", "on"}


def ensure_backend_secret(env: MutableMapping[str, str] | None = None) -> str:
    """Make sure ``SANDBAR_BACKEND_SECRET`` is set in ``env`` (children inherit it) and return it.

    Outside development mode a missing secret, or the published development one,
    is refused: a router or bridge must never run in production on a known secret.
    """
    env = os.environ if env is None else env
    env[SECRET_VAR] = secret = require_secret(SECRET_VAR, DEV_SECRET, env)
    return secret


def require_secret(var: str, dev_default: str, env: MutableMapping[str, str] | None = None) -> str:
    """A secret from ``var``; in development mode a published default, logged as such."""
    env = os.environ if env is None else env
    secret = env.get(var, "")
    if secret and secret != dev_default:
        return secret
    if dev_mode(env):
        log.warning("development mode: %s uses a built-in value (never in production)", var)
        return secret or dev_default
    if secret == dev_default:
        raise ConfigError(f"{var} is the published development value; set a private one")
    raise ConfigError(
        f"{var} is not set: export a long random value, e.g. "
        "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`, "
        f"or set {DEV_VAR}=1 for local development"
    )
