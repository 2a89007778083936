"""``sandbar-api db upgrade|current|downgrade``: the schema migrations from the shell."""

from __future__ import annotations

import argparse
import sys

from api.config import ApiConfig
from api.db import DatabaseConfigError, make_engine, wait_for_database
from api.migrations import current, downgrade, head, upgrade
from sandbar.config import ConfigError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sandbar-api db", description=__doc__)
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("upgrade", help="migrate to a revision (default: the latest)").add_argument(
        "revision", nargs="?", default="head"
    )
    actions.add_parser("downgrade", help="migrate back to a revision ('base': empty)").add_argument(
        "revision"
    )
    actions.add_parser("current", help="print the database's revision and the latest")
    args = parser.parse_args(argv)
    try:
        config = ApiConfig.from_env()
        engine = make_engine(config.database_url)
        wait_for_database(engine, config.database_wait_seconds)
    except (ConfigError, DatabaseConfigError) as exc:
        print(f"sandbar-api db: {exc}", file=sys.stderr)
        return 2
    if args.action == "upgrade":
        upgrade(engine, args.revision)
    elif args.action == "downgrade":
        downgrade(engine, args.revision)
    print(f"current: {current(engine) or '(empty)'}  latest: {head()}")
    return 0
