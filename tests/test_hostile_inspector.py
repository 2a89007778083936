"""Hostile clients against the inspector's surface on the real stack (issue 19, item 2):
anonymous, user-role and forged-role sessions calling every ``inspect.*`` procedure and
subscribing to the tap; non-staff and missing tokens on every ``/inspect/api/*``
endpoint; oversized and malformed arguments from a staff session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest
import requests
from autobahn.asyncio.component import Component
from autobahn.wamp.exception import ApplicationError

from sandbar import peers
from sandbar.peers import Client
from sandbar.testing import Stack

NOT_AUTHORIZED = "wamp.error.not_authorized"
INVALID = "sandbar.error.invalid_argument"
#: every inspector procedure: the live view's and the "why not" helper's (the gate refuses
#: those before they exist), and one nobody registers
PROCEDURES = (
    "inspect.services",
    "inspect.sessions",
    "inspect.topics",
    "inspect.tap.start",
    "inspect.tap.stop",
    "inspect.decisions",
    "inspect.why_not",
    "inspect.anything",
)
STAFF, USER = "hostile-staff", "hostile-user"


def _forged(url: str, authextra: dict[str, Any], ticket: str | None = None) -> Client:
    """A session whose HELLO claims ``authextra`` (anonymous, or signed in with ``ticket``)."""

    def component(**config: Any) -> Component:
        if ticket is None:
            config["authentication"] = {"anonymous": {"authextra": authextra}}
        else:
            config["authentication"]["ticket"]["authextra"] = authextra
        return Component(**config)

    with mock.patch.object(peers, "Component", component):
        return Client(url, authid=USER if ticket else None, ticket=ticket)


@pytest.fixture
def intruders(sandbar_stack: Stack) -> Iterator[dict[str, Client]]:
    url = sandbar_stack.router.ws_url
    user_token = sandbar_stack.token(USER)
    sandbar_stack.token(STAFF, "staff")  # a staff account exists; none of these is it
    made = {
        "anonymous": Client(url),
        "user": Client(url, authid=USER, ticket=user_token),
        "user claiming role staff": _forged(url, {"role": "staff"}, ticket=user_token),
        "anonymous claiming role staff": _forged(url, {"role": "staff", "authrole": "staff"}),
        "user claiming a staff authid": Client(url, authid=STAFF, ticket=user_token),
    }
    yield made
    for client in made.values():
        client.close()


def test_no_one_but_staff_calls_the_inspector_or_taps(intruders):
    for who, client in intruders.items():
        assert client.session._authrole in ("anonymous", "user"), who
        for procedure in PROCEDURES:
            with pytest.raises(ApplicationError) as refused:
                client.call(procedure, "articles")
            assert refused.value.error == NOT_AUTHORIZED, (who, procedure, refused.value)
        for match in (None, "prefix", "wildcard"):
            uri = {"prefix": "inspect.", "wildcard": "inspect."}.get(match or "", "inspect.tap")
            with pytest.raises(ApplicationError) as refused:
                client.subscribe(uri, match=match)
            assert refused.value.error == NOT_AUTHORIZED, (who, uri, match)


@pytest.fixture
def staff(sandbar_stack: Stack) -> Iterator[Client]:
    client = Client(
        sandbar_stack.router.ws_url, authid=STAFF, ticket=sandbar_stack.token(STAFF, "staff")
    )
    yield client
    client.close()


def _call(client: Client, uri: str, *args: Any, **kwargs: Any) -> Any:
    return client._thread.call(client.session.call, uri, *args, **kwargs)


BAD_ARGUMENTS: list[tuple[str, tuple[Any, ...], dict[str, Any], str]] = [
    ("inspect.sessions", (), {"authid": "a" * 100_000}, "authid must be a string of 1 to 256"),
    ("inspect.sessions", (), {"authid": ["ann"]}, "authid must be a string"),
    ("inspect.sessions", (), {"limit": 10**9}, "limit must be an integer from 1 to 1000"),
    ("inspect.sessions", (), {"limit": 0}, "limit must be an integer"),
    ("inspect.sessions", (), {"limit": True}, "limit must be an integer"),
    ("inspect.sessions", (), {"limit": "5"}, "limit must be an integer"),
    ("inspect.sessions", (), {"x" * 10_000: 1}, "takes authid, limit; not 'xxxx"),
    ("inspect.sessions", (None, 5, 6), {}, "got 3 positional arguments"),
    ("inspect.topics", (), {"limit": 10**9}, "limit must be an integer from 1 to 1000"),
    ("inspect.services", (1,), {}, "takes no arguments"),
    (
        "inspect.tap.start",
        ("c" * 10_000,),
        {},
        "pattern must be a topic URI or pattern of 1 to 512",
    ),
    ("inspect.tap.start", (), {}, "takes a pattern"),
    ("inspect.tap.start", ({"uri": "articles"},), {}, "got dict"),
    ("inspect.tap.start", ("",), {}, "got 0 characters"),
    ("inspect.tap.start", ("chat.{channel",), {}, "mixes text and a parameter"),
    ("inspect.tap.start", ("chat.{a}.{a}",), {}, "appears twice"),
    ("inspect.tap.start", ("chat.{c:[}",), {}, "bad regex"),
    ("inspect.tap.start", ("chat general",), {}, "is not a valid WAMP URI"),
    ("inspect.tap.start", ("..",), {}, "not a WAMP wildcard"),
    ("inspect.tap.start", ("wamp.session.on_join",), {}, "belong to the router"),
    ("inspect.tap.start", ("inspect.tap",), {}, "'inspect.*' topics cannot be tapped"),
    ("inspect.tap.start", ("sandbar.",), {}, "'sandbar.*' topics cannot be tapped"),
    ("inspect.tap.stop", ("one",), {}, "tap must be a tap id"),
    ("inspect.tap.stop", (), {"tap": 1, "more": 2}, "not 'more'"),
]


@pytest.mark.parametrize(("procedure", "args", "kwargs", "reason"), BAD_ARGUMENTS)
def test_oversized_or_malformed_arguments_get_a_clear_error(staff, procedure, args, kwargs, reason):
    with pytest.raises(ApplicationError) as refused:
        _call(staff, procedure, *args, **kwargs)
    assert refused.value.error == INVALID, refused.value
    assert reason in refused.value.args[0], refused.value.args[0]


def test_the_service_still_answers_after_the_hostile_calls(staff):
    assert _call(staff, "inspect.sessions", authid=STAFF)[0]["authrole"] == "staff"


ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/inspect/api/publish", {"event": "article.created", "payload": {}}),
    ("GET", "/inspect/api/events/0123456789abcdef0123456789abcdef", None),
    ("GET", "/inspect/api/outbox", None),
]


@pytest.fixture
def http(sandbar_stack: Stack) -> Callable[..., requests.Response]:
    def send(method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.request(
            method, f"{sandbar_stack.api.url}{path}", json=body, headers=headers, timeout=10
        )

    return send


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_every_endpoint_refuses_anyone_but_staff(sandbar_stack, http, method, path, body):
    user = sandbar_stack.token(USER)
    for token, status, code in (
        (None, 401, "unauthorized"),
        ("not-a-token", 401, "invalid_token"),
        (user, 403, "forbidden"),
    ):
        answer = http(method, path, body, token)
        assert answer.status_code == status, (token, answer.text)
        assert answer.json()["error"]["code"] == code
    # forged claims in the request change nothing: only the token's user counts
    forged = http(method, path, {**(body or {}), "role": "staff"}, user)
    assert forged.status_code == 403
    allowed = http(method, path, body, sandbar_stack.token(STAFF, "staff"))
    assert allowed.status_code not in (401, 403), allowed.text


def test_oversized_requests_from_staff_get_a_clear_error(sandbar_stack, http):
    token = sandbar_stack.token(STAFF, "staff")
    long_id = http("GET", "/inspect/api/events/" + "a" * 1000, token=token)
    assert long_id.status_code == 400 and long_id.json()["error"]["field"] == "id"
    # longer request lines than gunicorn takes (4094 bytes) never reach the app
    assert http("GET", "/inspect/api/events/" + "a" * 10_000, token=token).status_code == 414
    long_name = http("POST", "/inspect/api/publish", {"event": "e" * 100_000, "payload": {}}, token)
    assert long_name.status_code == 400
    error = long_name.json()["error"]
    assert error["field"] == "event" and len(error["message"]) < 1000
    not_json = requests.post(
        f"{sandbar_stack.api.url}/inspect/api/publish",
        data=b"{",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid_json"
