"""Users and tokens: passwords hashed with scrypt (werkzeug), tokens signed and timed
(itsdangerous). The API is the one authority on tokens: the topics service asks it
(``GET /auth/whoami``) when a browser connects with one.

A token carries the user's ``token_version``; logout or disabling the account bumps
it, which kills every token issued before, and emits ``auth.revoked`` so the topics
service ends the user's live WAMP sessions.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Blueprint, current_app, g, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import Connection, Engine, Row, bindparam, insert, select, update
from werkzeug.security import check_password_hash, generate_password_hash

from api.backends import begin_write
from api.db import users
from api.errors import ApiError, invalid, json_object, required_string
from api.signals import auth_revoked

bp = Blueprint("auth", __name__)

F = TypeVar("F", bound=Callable[..., Any])
#: built once: every authenticated request runs it
_USER_BY_NAME = select(users).where(users.c.username == bindparam("username"))


@dataclass(frozen=True)
class User:
    username: str
    role: str
    account_id: int

    def as_dict(self) -> dict[str, Any]:
        return {"user": self.username, "role": self.role, "extra": {"user": self.username}}


class TokenError(ApiError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(401, code, message)


class Tokens:
    def __init__(self, secret: str, max_age: int) -> None:
        self.max_age = max_age
        self._serializer = URLSafeTimedSerializer(secret, salt="sandbar.token")

    def issue(self, username: str, version: int) -> str:
        return self._serializer.dumps({"u": username, "v": version})

    def identify(self, conn: Connection, token: str) -> User:
        """The user ``token`` speaks for, or TokenError saying why not."""
        try:
            claims = self._serializer.loads(token, max_age=self.max_age)
        except SignatureExpired:
            raise TokenError("token_expired", "your sign-in has expired; sign in again") from None
        except BadSignature:
            raise TokenError("invalid_token", "this token is not valid; sign in again") from None
        row = conn.execute(_USER_BY_NAME, {"username": claims.get("u")}).one_or_none()
        if row is None or row.disabled:
            raise TokenError("account_disabled", "this account is disabled")
        if row.token_version != claims.get("v"):
            raise TokenError("token_revoked", "you signed out; sign in again")
        return User(row.username, row.role, row.id)

    def expires_at(self, token: str) -> int:
        """When a valid ``token`` expires (unix seconds)."""
        _, signed_at = self._serializer.loads(token, max_age=self.max_age, return_timestamp=True)
        return int(signed_at.timestamp()) + self.max_age


# -- user store -----------------------------------------------------------------------


USERNAME_RULE = "1-64 letters, digits, '-' or '_'"


def is_username(name: str) -> bool:
    """Whether ``name`` can name an account (and so be one part of ``user.<name>``)."""
    return 0 < len(name) <= 64 and name.replace("-", "").replace("_", "").isalnum()


def add_user(engine: Engine, username: str, password: str, role: str = "user") -> None:
    if not is_username(username):
        raise ValueError(f"a username is {USERNAME_RULE}")
    if len(password) < 8:
        raise ValueError("a password needs at least 8 characters")
    with begin_write(engine) as conn:
        conn.execute(
            insert(users).values(
                username=username,
                password_hash=generate_password_hash(password),
                role=role,
                disabled=False,
                token_version=1,
            )
        )


@functools.cache
def _unknown_user_hash() -> str:
    """A hash of a password nobody knows, made with the current method and cost."""
    return generate_password_hash(secrets.token_urlsafe(32))


@bp.record_once
def _hash_ahead(_state: Any) -> None:
    """Made while the app is built: else the first unknown user would take twice as long."""
    _unknown_user_hash()


def password_matches(row: Row[Any] | None, password: str) -> bool:
    """Whether ``password`` signs ``row``'s account in. Always one hash, for unknown and
    disabled accounts too, so the time taken does not tell which usernames exist."""
    stored = row.password_hash if row is not None else _unknown_user_hash()
    matches = check_password_hash(stored, password)
    return matches and row is not None and not row.disabled


def revoke(conn: Connection, username: str, *, disable: bool | None = None) -> bool:
    """End every token of ``username`` (and enable or disable the account) within ``conn``'s
    transaction; the caller sends ``auth_revoked`` in the same one."""
    values: dict[str, Any] = {"token_version": users.c.token_version + 1}
    if disable is not None:
        values["disabled"] = disable
    changed = conn.execute(update(users).where(users.c.username == username).values(**values))
    return bool(changed.rowcount)


# -- HTTP -------------------------------------------------------------------------------


def _tokens() -> Tokens:
    tokens: Tokens = current_app.extensions["sandbar_tokens"]
    return tokens


def _bearer() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401, "unauthorized", "send 'Authorization: Bearer <token>' (POST /auth/token)"
        )
    return token.strip()


def current_user() -> User:
    """The caller named by the Bearer token (401 otherwise); cached for the request."""
    if "sandbar_user" not in g:
        with current_app.extensions["sandbar_db"].connect() as conn:
            g.sandbar_user = _tokens().identify(conn, _bearer())
    user: User = g.sandbar_user
    return user


def login_required(view: F) -> F:
    """Refuse the request without a valid token (unless the app allows anonymous writes)."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if current_app.config["SANDBAR"].require_login_to_write:
            current_user()
        return view(*args, **kwargs)

    return guarded  # type: ignore[return-value]


@bp.post("/auth/token")
def sign_in() -> dict[str, Any]:
    data = json_object('{"username": ..., "password": ...}')
    username, password = (required_string(data, field) for field in ("username", "password"))
    for field, value in (("username", username), ("password", password)):
        if not value:
            raise invalid(field, "is required")
    with current_app.extensions["sandbar_db"].connect() as conn:
        row = conn.execute(_USER_BY_NAME, {"username": username}).one_or_none()
    if not password_matches(row, password):
        raise ApiError(401, "bad_credentials", "wrong username or password")
    tokens = _tokens()
    return {
        "token": tokens.issue(row.username, row.token_version),
        "expires_in": tokens.max_age,
        "user": row.username,
    }


@bp.post("/auth/logout")
def sign_out() -> tuple[str, int]:
    user = current_user()
    push = current_app.extensions["sandbar_push"]
    with push.transaction() as conn:
        revoke(conn, user.username)
        auth_revoked.send(current_app._get_current_object(), user=user.username)  # type: ignore[attr-defined]
    return "", 204


@bp.get("/auth/whoami")
def whoami() -> tuple[dict[str, Any], dict[str, str]]:
    """Who a token speaks for, and until when (header ``Sandbar-Token-Expires``, unix
    seconds); the topics service's authenticator asks this, and ends the session then."""
    user = current_user()
    return user.as_dict(), {"Sandbar-Token-Expires": str(_tokens().expires_at(_bearer()))}
