"""The topics service: a backend WAMP session that serves the declared topics.

This first version connects, announces what is declared and answers
``sandbar.topics.list``; subscription decisions come with the authorizer.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from typing import Any

from pydantic import field_validator

from sandbar.config import ConfigError, StrictModel
from sandbar.logs import setup_logging
from sandbar.secrets import ensure_backend_secret
from sandbar.service import run_until_signalled
from sandbar.wamp import ApplicationSession, RouterConnection, make_component
from topics.registry import TopicRouter

log = logging.getLogger("sandbar.topics")

DEFAULT_APP = "topics.examples:topics"


class TopicsConfig(StrictModel):
    router: RouterConnection
    app: str = DEFAULT_APP

    @field_validator("app")
    @classmethod
    def _check_app(cls, app: str) -> str:
        if ":" not in app:
            raise ValueError(f"'{app}' must be 'module:attribute', e.g. '{DEFAULT_APP}'")
        return app


def load_router(spec: str) -> TopicRouter:
    """Import ``module:attribute`` and check it is a TopicRouter."""
    module_name, _, attribute = spec.partition(":")
    try:
        router = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"app: cannot load '{spec}' ({exc})") from None
    if not isinstance(router, TopicRouter):
        raise ConfigError(f"app: '{spec}' is a {type(router).__name__}, not a TopicRouter")
    return router


class TopicsService:
    def __init__(self, config: TopicsConfig, router: TopicRouter) -> None:
        self.config = config
        self.topics = router
        router.freeze()

    def describe(self) -> list[str]:
        return [topic.name for topic in self.topics]

    async def on_join(self, session: ApplicationSession, details: Any) -> None:
        await session.register(self.describe, "sandbar.topics.list")
        log.info("serving %d topics: %s", len(self.topics), ", ".join(self.describe()))

    async def run(self, stop: asyncio.Event) -> None:
        component = make_component(self.config.router, on_join=self.on_join)
        task = asyncio.ensure_future(component.start(asyncio.get_running_loop()))
        await stop.wait()
        try:
            await asyncio.wait_for(asyncio.ensure_future(component.stop()), timeout=3)
        except Exception as exc:  # not connected: nothing to leave
            log.debug("stop: %s", exc)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        log.info("stopped")


def run(config: TopicsConfig) -> None:
    service = TopicsService(config, load_router(config.app))
    run_until_signalled(service.run)


def main(argv: list[str] | None = None) -> None:
    env = os.environ
    parser = argparse.ArgumentParser(prog="sandbar-topics", description="Sandbar topics service")
    parser.add_argument(
        "--app",
        default=env.get("SANDBAR_TOPICS_APP", DEFAULT_APP),
        help="the TopicRouter to serve, as module:attribute",
    )
    parser.add_argument(
        "--router-url", default=env.get("SANDBAR_ROUTER_BACKEND_URL", "rs://127.0.0.1:8081")
    )
    args = parser.parse_args(argv)
    setup_logging()
    try:
        secret = ensure_backend_secret()
        config = TopicsConfig(
            app=args.app,
            router=RouterConnection(url=args.router_url, authid="topics", ticket=secret),
        )
        run(config)
    except (ConfigError, ValueError) as exc:
        print(f"sandbar-topics: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
