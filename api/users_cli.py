"""``sandbar-api users add|disable|enable NAME``: manage accounts from the shell."""

from __future__ import annotations

import argparse
import getpass
import sys
import time

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from api.app import create_app
from api.auth import add_user, revoke
from api.config import ApiConfig
from api.db import outbox
from api.push import transaction
from api.signals import auth_revoked


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sandbar-api users", description=__doc__)
    actions = parser.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="create a user")
    add.add_argument("username")
    add.add_argument("--role", default="user")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input instead of prompting",
    )
    for action in ("disable", "enable"):
        actions.add_parser(action, help=f"{action} a user (ends their sessions)").add_argument(
            "username"
        )
    args = parser.parse_args(argv)
    app = create_app(ApiConfig.from_env())
    engine = app.extensions["sandbar_db"]
    if args.action == "add":
        password = (
            sys.stdin.readline().rstrip("\n")
            if args.password_stdin
            else getpass.getpass(f"password for {args.username}: ")
        )
        try:
            add_user(engine, args.username, password, args.role)
        except (ValueError, IntegrityError) as exc:
            reason = "that username is taken" if isinstance(exc, IntegrityError) else str(exc)
            print(f"sandbar-api users: {reason}", file=sys.stderr)
            return 2
        print(f"created user {args.username} ({args.role})")
        return 0
    with app.app_context(), transaction() as conn:
        if not revoke(conn, args.username, disable=args.action == "disable"):
            print(f"sandbar-api users: no user '{args.username}'", file=sys.stderr)
            return 2
        auth_revoked.send(app, user=args.username)
    print(f"{args.action}d {args.username}; their tokens no longer work")
    if _wait_delivered(engine):
        print("their live sessions were ended")
    else:
        print("the bridge did not confirm yet; live sessions end as soon as it is reachable")
    return 0


def _wait_delivered(engine: Engine, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            pending = conn.execute(
                select(outbox.c.id)
                .where(outbox.c.name == "auth.revoked", outbox.c.delivered_at.is_(None))
                .limit(1)
            ).first()
        if pending is None:
            return True
        time.sleep(0.05)
    return False
