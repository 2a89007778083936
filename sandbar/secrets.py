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
    """Make sure ``SANDBAR_BACKEND_SECRET`` is set in ``env`` and return it.

    Outside development mode a missing secret, or the published development one,
    is refused: a router or bridge must never run in production on a known secret.
    """
    env = os.environ if env is None else env
    secret = env.get(SECRET_VAR, "")
    if dev_mode(env):
        if not secret:
            env[SECRET_VAR] = secret = DEV_SECRET
        if secret == DEV_SECRET:
            log.warning("development mode: using the built-in backend secret (never in production)")
        return secret
    if not secret:
        raise ConfigError(
            f"{SECRET_VAR} is not set: export a long random value, e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`, "
            f"or set {DEV_VAR}=1 for local development"
        )
    if secret == DEV_SECRET:
        raise ConfigError(
            f"{SECRET_VAR} is the published development secret; set a private one, "
            f"or set {DEV_VAR}=1 if this really is a development machine"
        )
    return secret
