"""Hostile clients against the real router and topics service: refused readers that try
to write, huge URIs, NUL-leading strings over msgpack, forged authextra, floods of
explain calls and subscriptions, and sessions that outlive their token."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from autobahn.asyncio.component import Component
from autobahn.wamp.exception import ApplicationError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sandbar import peers as wamp_support
from sandbar.router_guard import not_base64
from tests.support.procs import Api, Bridge, Router, Topics, free_port, wait_until
from tests.support.wamp import Client

NOT_AUTHORIZED = "wamp.error.not_authorized"


@dataclass
class Stack:
    router: Router
    topics: Topics

    def log(self) -> str:
        return self.topics.proc.output()

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.topics.proc.pid}/status").read_text()
        return int(
            next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("hostile-topics")
    router = Router(workdir).start()
    with router, Topics(workdir, router, app="tests.topics_senders_app:topics").start() as topics:
        yield Stack(router, topics)


@pytest.fixture
def clients(stack: Stack) -> Iterator[Any]:
    made: list[Client] = []

    def make(backend: bool = False) -> Client:
        url = stack.router.backend_url if backend else stack.router.ws_url
        made.append(Client(url, authid="topics" if backend else None))
        return made[-1]

    yield make
    for each in made:
        each.close()


def browser(url: str, serializer: str = "json", authextra: dict[str, Any] | None = None) -> Client:
    """An anonymous AutobahnPython client speaking ``serializer`` over WebSocket (as
    AutobahnJS may: msgpack too), its HELLO claiming ``authextra``."""

    def component(**config: Any) -> Component:
        config["transports"][0]["serializers"] = [serializer]
        config["authentication"] = {"anonymous": {"authextra": authextra or {}}}
        return Component(**config)

    with mock.patch.object(wamp_support, "Component", component):
        return Client(url)


# -- finding 2: a refused reader cannot write ---------------------------------------------


def test_refused_readers_never_reach_readers_by_call_or_publish(stack, clients):
    reader = clients(backend=True)  # stands in for staff
    for uri in ("room.staff-ops", "board.staff-ops", "room.marker"):
        reader.subscribe(uri)
    browser = clients()
    tried = 0

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.sampled_from(["call", "publish"]),
        st.sampled_from(["room.staff-ops", "board.staff-ops"]),
        st.dictionaries(st.sampled_from(["text", "x"]), st.text(max_size=20), max_size=2),
    )
    # over JSON a string that begins with NUL means base64 bytes: the router refuses one
    # that is not base64 before any rule sees it (M4 is the msgpack side, below)
    @example("call", "room.staff-ops", {"text": "\x00\x87x"})
    @example("publish", "board.staff-ops", {"text": "\x00abc"})
    def send(how: str, uri: str, payload: dict[str, str]) -> None:
        nonlocal tried
        tried += 1
        with pytest.raises(ApplicationError) as info:
            (browser.call if how == "call" else browser.publish)(uri, payload)
        refused = "wamp.error.invalid_argument" if not_base64(payload) else NOT_AUTHORIZED
        assert info.value.error == refused

    send()
    browser.call("room.marker", {"text": "after"})
    wait_until(lambda: reader.events, 5, "the marker delivered")
    print(f"\nrefused readers: {tried} calls and publishes, none delivered")
    assert [e.topic for e in reader.events] == ["room.marker"]


# -- M1 and M5: huge URIs are refused before they are logged or remembered ------------


def test_huge_uris_are_refused_unlogged_and_unremembered(stack, clients):
    browser = clients()
    huge = "chat." + "x" * 200_000
    with pytest.raises(ApplicationError) as info:
        browser.subscribe(huge)
    assert info.value.error == NOT_AUTHORIZED
    before = stack.rss_kib()
    for i in range(300):  # the probe's case: 30 KB denied URIs, once cost 29 MB for 500
        with pytest.raises(ApplicationError):
            browser.subscribe(f"chat.{i}{'y' * 30_000}")
    grown = stack.rss_kib() - before
    longest = max(len(line) for line in stack.log().splitlines())
    print(f"\nhuge URIs: topics grew {grown} KiB for 300 x 30 KB; longest log line {longest}")
    assert longest < 1000
    assert grown < 4096
    assert browser.call("explain.subscribe", huge)["reason"] == (
        "URI too long (200005 characters); at most 512"
    )
    browser.subscribe("chat.after-huge")  # still serving


# -- M4: nothing relayed may begin with NUL -------------------------------------------


def test_nul_leading_text_over_msgpack_is_refused_and_json_readers_stay(stack, clients):
    reader = clients()  # AutobahnPython over JSON
    reader.subscribe("chat.nul")
    sender = browser(stack.router.ws_url, "msgpack")
    try:
        for uri, payload, where in [
            ("chat.nul", {"text": " \x00A"}, "payload['text']"),  # strip() leaves the NUL first
            ("echo.nul", {"\x00k": "v"}, "a key of payload['payload']"),
        ]:
            with pytest.raises(ApplicationError) as info:
                sender.call(uri, payload)
            assert info.value.error == "sandbar.error.rejected"
            assert info.value.args[0].startswith(f"{where} begins with a NUL character")
        sender.call("chat.nul", {"text": "still here"})
    finally:
        sender.close()
    [message] = reader.wait_for(1, name="chat.message")
    assert message.args[0]["text"] == "still here"


# -- L6: an anonymous HELLO's authextra is not believed -------------------------------


def test_anonymous_authextra_is_not_what_topic_code_sees(stack):
    liar = browser(stack.router.ws_url, authextra={"user": "alice"})
    try:
        liar.subscribe("echo.who")
        liar.call("echo.who", {"hi": 1})
        [event] = liar.wait_for(1)
    finally:
        liar.close()
    assert event.args[0]["authextra"] == {}


# -- L5: explain calls and subscriptions per session are bounded ------------------------


def test_explain_calls_are_rate_limited_with_a_reason(clients):
    browser = clients()
    outcomes = []
    for _ in range(40):
        try:
            browser.call("explain.subscribe", "nothing.here")
            outcomes.append("answered")
        except ApplicationError as exc:
            outcomes.append(f"{exc.error}: {exc.args[0]}")
    refused = [o for o in outcomes if o != "answered"]
    print(f"\nexplain flood: {outcomes.count('answered')} answered, {len(refused)} refused")
    assert 20 <= outcomes.count("answered") < 30
    assert refused[0] == (
        "sandbar.error.rate_limited: slow down: at most 2 explain calls a second (bursts of 20)"
    )


def test_one_session_holds_at_most_100_subscriptions(clients):
    browser = clients()
    for i in range(100):
        browser.subscribe(f"chat.many-{i}")
    browser.subscribe("chat.many-7")  # again: not one more
    with pytest.raises(ApplicationError) as info:
        browser.subscribe("chat.many-100")
    assert info.value.error == NOT_AUTHORIZED
    assert browser.call("explain.subscribe", "chat.many-100")["reason"] == (
        "this session holds 100 subscriptions, the most allowed; unsubscribe from one first"
    )
    clients().subscribe("chat.many-100")  # another session is not limited by this one


# -- L1: a session ends when its token expires -----------------------------------------


def test_a_signed_in_session_ends_when_its_token_expires(tmp_path):
    port = free_port()
    with contextlib.ExitStack() as running:
        router = running.enter_context(Router(tmp_path).start())
        running.enter_context(Topics(tmp_path, router, api_url=f"http://127.0.0.1:{port}").start())
        bridge = running.enter_context(Bridge(tmp_path, router).start())
        api = running.enter_context(
            Api(tmp_path, bridge.endpoint, port=port, token_max_age="4").start()
        )
        api.add_user("carol", "correct horse battery")
        token = api.sign_in("carol", "correct horse battery")
        carol = running.enter_context(
            contextlib.closing(Client(router.ws_url, authid="carol", ticket=token))
        )
        carol.subscribe("chat.expiring")
        details = carol.wait_left(timeout=8)
        assert (details.reason, details.message) == (
            "sandbar.close.token_expired",
            "your sign-in has expired; sign in again",
        )
