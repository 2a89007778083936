"""Fixtures that run the real stack: Crossbar router, bridge, API (gunicorn) on free ports."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.support.browser import Browser, launch, missing_prerequisite
from tests.support.postgres import database_url, postgres_server, postgres_url  # noqa: F401
from tests.support.procs import Api, Bridge, Router, Topics, free_port
from tests.support.proxied import proxies_of
from tests.support.wamp import Client, Subscriber

# The plugin a project's tests use (also registered as a pytest11 entry point).
pytest_plugins = ["sandbar.testing"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the test (``item.rep_call``) so fixtures can see failures."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def api_port() -> int:
    """The port every session-stack API uses (one at a time), so the topics service knows
    where to check browsers' tokens."""
    return free_port()


@pytest.fixture(scope="session")
def topics_metrics_port() -> int:
    """Where the session's topics service serves /metrics (tests/test_metrics.py)."""
    return free_port()


class SessionRouters:
    """The session's routers, one per number of proxy workers, each with its topics service,
    started on first use (in ~3-4 s) and kept for the session."""

    def __init__(self, factory: pytest.TempPathFactory, api_port: int, metrics_port: int) -> None:
        self.factory, self.api_port, self.metrics_port = factory, api_port, metrics_port
        self.started: dict[int, tuple[Router, Topics]] = {}

    def get(self, proxies: int) -> Router:
        if proxies not in self.started:
            workdir = self.factory.mktemp(f"router{proxies}")
            router = Router(workdir, proxies=proxies).start()
            topics = Topics(
                workdir,
                router,
                api_url=f"http://127.0.0.1:{self.api_port}",
                metrics_port=0 if proxies else self.metrics_port,  # tests/test_metrics.py
            )
            try:
                topics.start()
            except BaseException:  # no router left behind
                topics.stop()
                router.stop()
                raise
            self.started[proxies] = (router, topics)
        return self.started[proxies][0]

    def stop(self) -> None:
        for router, topics in self.started.values():
            topics.stop()
            router.stop()


@pytest.fixture(scope="session")
def session_routers(
    tmp_path_factory: pytest.TempPathFactory, api_port: int, topics_metrics_port: int
) -> Iterator[SessionRouters]:
    routers = SessionRouters(tmp_path_factory, api_port, topics_metrics_port)
    yield routers
    routers.stop()


@pytest.fixture
def router(session_routers: SessionRouters, request: pytest.FixtureRequest) -> Router:
    """The session's router and topics service (tests that restart or kill either make
    their own); parametrized (tests/support/proxied.py), the one behind that many proxies."""
    return session_routers.get(proxies_of(request))


@pytest.fixture
def bridge(router: Router, tmp_path: Path) -> Iterator[Bridge]:
    bridge = Bridge(tmp_path, router).start()
    yield bridge
    bridge.stop()


@pytest.fixture
def api(bridge: Bridge, tmp_path: Path, api_port: int) -> Iterator[Api]:
    api = Api(tmp_path, bridge.endpoint, port=api_port).start()
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


@pytest.fixture
def client(router: Router) -> Iterator[object]:
    """``client()`` → a browser-like session (or a backend one with ``authid=``)."""
    made: list[Client] = []

    def make(
        url: str | None = None, authid: str | None = None, ticket: str | None = None
    ) -> Client:
        made.append(Client(url or router.ws_url, authid=authid, ticket=ticket))
        return made[-1]

    yield make
    for each in made:
        each.close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Debian's Chromium under Playwright, one per test module."""
    problem = missing_prerequisite()
    if problem:
        pytest.fail(problem)
    with launch() as browser:
        yield browser
