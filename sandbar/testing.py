"""pytest plugin: your own Sandbar stack, real and on free ports, for your tests.

Installed with Sandbar (entry point ``pytest11``), it starts once per test session the
real router, the topics service with *your* topics app, the bridge with *your* routes
YAML and the API, and gives each test:

    def test_comments(api, browser):
        alice = browser(user="alice")              # a signed-in WAMP session, as a page has
        alice.subscribe("article.1.comments")
        api.sign_in("bob").post("/articles/1/comments", json={"text": "hi"})
        [event] = alice.wait_for(1, name="comment.added")

Settings (``pytest.ini``/``pyproject.toml`` ``[tool.pytest.ini_options]``):
``sandbar_topics_app`` (default ``SANDBAR_TOPICS_APP``, else the shipped examples),
``sandbar_bridge_config`` (default ``config/bridge.yaml`` under the rootdir) and
``sandbar_api_app`` (default ``api.app:create_app``). Nothing starts
unless a test asks for one of these fixtures. Everything runs from ``.venv/bin`` of the
interpreter running pytest; the stack's API database lives in pytest's temporary folder.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from topics.registry import app_spec

if TYPE_CHECKING:
    import requests

    from sandbar.peers import Client
    from sandbar.procs import Api, Bridge, Router, Topics

PASSWORD = "correct horse battery"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("sandbar_topics_app", "the TopicRouter to serve, as module:attribute")
    parser.addini("sandbar_bridge_config", "the bridge YAML whose routes to use")
    parser.addini("sandbar_api_app", "the API's app factory, as module:function")


@dataclass
class Stack:
    """The running services; ``add_user`` makes an account (once) and returns its token."""

    router: Router
    topics: Topics
    bridge: Bridge
    api: Api
    topics_app: str
    _users: set[str] = field(default_factory=set)

    def token(self, user: str, role: str = "user") -> str:
        if user not in self._users:
            self.api.add_user(user, PASSWORD, role=role)
            self._users.add(user)
        return self.api.sign_in(user, PASSWORD)


class ApiClient:
    """``requests`` against the stack's API, with paths (``/articles``) and a sign-in."""

    def __init__(self, stack: Stack, token: str | None = None) -> None:
        import requests

        self.stack, self.url = stack, stack.api.url
        self.http = requests.Session()
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def sign_in(self, user: str, role: str = "user") -> ApiClient:
        """A client signed in as ``user`` (the account is created on first use)."""
        return ApiClient(self.stack, self.stack.token(user, role))

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return self.http.request(method, f"{self.url}{path}", **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)


def _setting(config: pytest.Config, name: str) -> str | None:
    value = config.getini(name)
    return str(value) if value else None


@pytest.fixture(scope="session")
def sandbar_stack(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[Stack]:
    """Router, topics service (your app), bridge (your routes) and API, started once."""
    from sandbar.procs import Api, Bridge, Router, Topics, free_port

    app = _setting(pytestconfig, "sandbar_topics_app") or app_spec()
    routes = Path(
        _setting(pytestconfig, "sandbar_bridge_config")
        or pytestconfig.rootpath / "config" / "bridge.yaml"
    )
    workdir = tmp_path_factory.mktemp("sandbar")
    api_port = free_port()
    with contextlib.ExitStack() as running:  # stops what started, even if a later start fails
        router = running.enter_context(Router(workdir).start())
        topics = running.enter_context(
            Topics(workdir, router, app=app, api_url=f"http://127.0.0.1:{api_port}").start()
        )
        bridge = running.enter_context(
            Bridge(workdir, router, path=routes.resolve(), topics_app=app).start()
        )
        api = Api(
            workdir,
            bridge.endpoint,
            port=api_port,
            topics_app=app,
            routes_config=str(routes.resolve()),
            app=_setting(pytestconfig, "sandbar_api_app") or "api.app:create_app",
        )
        running.enter_context(api.start())
        yield Stack(router, topics, bridge, api, app)


def _api(sandbar_stack: Stack) -> ApiClient:
    """The API over HTTP, anonymous; ``api.sign_in("alice")`` for a signed-in one."""
    return ApiClient(sandbar_stack)


api = pytest.fixture(_api, name="api")
#: the same, for projects whose own conftest already has an ``api`` (this one does)
sandbar_api = pytest.fixture(_api, name="sandbar_api")


@pytest.fixture
def browser(sandbar_stack: Stack) -> Iterator[Callable[..., Client]]:
    """``browser(user="alice")``: a WAMP session signed in as a page is (token as ticket),
    or anonymous with no user. Each has ``subscribe``, ``call``, ``publish``, ``events``,
    ``wait_for``; all are closed after the test."""
    from sandbar.peers import Client

    made: list[Client] = []

    def make(user: str | None = None, role: str = "user") -> Client:
        url = sandbar_stack.router.ws_url
        token = sandbar_stack.token(user, role) if user else None
        made.append(Client(url, authid=user, ticket=token) if token else Client(url))
        return made[-1]

    yield make
    for each in made:
        each.close()


@pytest.fixture
def subscriber(browser: Callable[..., Client]) -> Callable[..., Client]:
    """``subscriber("article.1.comments", user=None)``: a browser already subscribed."""

    def make(*uris: str, user: str | None = None) -> Client:
        client = browser(user=user)
        for uri in uris:
            client.subscribe(uri)
        return client

    return make
