"""Fixtures that run the real stack: Crossbar router, bridge, API (gunicorn) on free ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import Api, Bridge, Router
from tests.support.wamp import Subscriber


@pytest.fixture(scope="session")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    """One router for the session (it starts in ~3 s); tests that restart it make their own."""
    router = Router(tmp_path_factory.mktemp("router")).start()
    yield router
    router.stop()


@pytest.fixture
def bridge(router: Router, tmp_path: Path) -> Iterator[Bridge]:
    bridge = Bridge(tmp_path, router).start()
    yield bridge
    bridge.stop()


@pytest.fixture
def api(bridge: Bridge, tmp_path: Path) -> Iterator[Api]:
    api = Api(tmp_path, bridge.endpoint).start()
    yield api
    api.stop()


@pytest.fixture
def subscribe(router: Router) -> Iterator[object]:
    """``subscribe("articles", ...)`` → a started Subscriber; all are closed afterwards."""
    made: list[Subscriber] = []

    def make(
        *topics: str, url: str | None = None, get_retained: bool = False, authid: str | None = None
    ) -> Subscriber:
        subscriber = Subscriber(
            url or router.ws_url, list(topics), get_retained=get_retained, authid=authid
        )
        subscriber.start()
        made.append(subscriber)
        return subscriber

    yield make
    for subscriber in made:
        subscriber.close()
