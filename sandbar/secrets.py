"""The shared secrets (backend, API tokens), and the one place a development default is allowed."""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping

from sandbar.config import ConfigError

DEV_SECRET = "sandbar-development-secret-not-for-production"
DEV_TOKEN_SECRET = "sandbar-development-token-secret-not-for-production"
SECRET_VAR = "SANDBAR_BACKEND_SECRET"
TOKEN_SECRET_VAR = "SANDBAR_API_TOKEN_SECRET"
DEV_VAR = "SANDBAR_DEV"
#: values anyone can read: the development defaults and the placeholders in .env.example
PUBLISHED = frozenset(
    {
        DEV_SECRET,
        DEV_TOKEN_SECRET,
        "replace-with-a-long-random-secret",
        "replace-with-another-long-random-secret",
    }
)
MIN_LENGTH = 32
MIN_DISTINCT = 8  # characters: "aaaa…" is long, not random
HOW_TO_MAKE_ONE = "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"

log = logging.getLogger("sandbar.secrets")


def dev_mode(env: MutableMapping[str, str] | None = None) -> bool:
    """True when the user explicitly asked for development mode (``SANDBAR_DEV=1``)."""
    env = os.environ if env is None else env
    return env.get(DEV_VAR, "").strip().lower() in {"1", "true", "yes", "on"}


def ensure_backend_secret(env: MutableMapping[str, str] | None = None) -> str:
    """Make sure ``SANDBAR_BACKEND_SECRET`` is set in ``env`` (children inherit it) and return it.

    Outside development mode a missing, weak or published secret is refused: a router or
    bridge must never run in production on a secret others know or can guess.
    """
    env = os.environ if env is None else env
    env[SECRET_VAR] = secret = require_secret(SECRET_VAR, DEV_SECRET, env)
    return secret


def weakness(secret: str) -> str | None:
    """Why ``secret`` cannot guard anything (it is missing, published or guessable), or None."""
    if not secret:
        return "is not set"
    if secret in PUBLISHED:
        return "is a published value (a development default or the .env.example placeholder)"
    if len(secret) < MIN_LENGTH:
        return f"is too short ({len(secret)} characters; at least {MIN_LENGTH})"
    if len(set(secret)) < MIN_DISTINCT:
        return f"does not look random (fewer than {MIN_DISTINCT} different characters)"
    return None


def require_secret(
    var: str,
    dev_default: str,
    env: MutableMapping[str, str] | None = None,
    value: str | None = None,
) -> str:
    """``value`` (by default ``env[var]``) if it is a strong secret; in development mode
    whatever is set, or a published default, logged as such."""
    env = os.environ if env is None else env
    secret = env.get(var, "") if value is None else value
    problem = weakness(secret)
    if problem is None:
        return secret
    if dev_mode(env):
        log.warning("development mode: %s %s; never run this way in production", var, problem)
        return secret or dev_default
    hint = f", or set {DEV_VAR}=1 for local development" if not secret else ""
    raise ConfigError(
        f"{var} {problem}: use a long random value, made with e.g. {HOW_TO_MAKE_ONE}{hint}"
    )
