"""Topic components against the real router and topics service: who may subscribe, publish, call."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from autobahn.wamp.exception import ApplicationError

from sandbar.session_proof import verify
from tests.support.procs import SECRET, Router, Topics, wait_until
from tests.support.proxied import WITH_PROXIES
from tests.support.wamp import Client

NOT_AUTHORIZED = "wamp.error.not_authorized"


def _denied(client, uri: str, match: str | None = None) -> ApplicationError:
    with pytest.raises(ApplicationError) as info:
        client.subscribe(uri, match=match)
    return info.value


@WITH_PROXIES
@pytest.mark.parametrize("uri", ["articles", "chat.general", "chat.a-b_c", "whisper.open"])
def test_allowed_subscriptions(client, uri):
    client().subscribe(uri)


@WITH_PROXIES
def test_prefix_subscription_allowed_only_where_a_topic_declares_it(client):
    browser = client()
    browser.subscribe("feed", match="prefix")
    error = _denied(browser, "chat", match="prefix")
    assert error.error == NOT_AUTHORIZED
    assert browser.call("explain.subscribe", "chat")["reason"] == (
        "prefix subscriptions to 'chat' are not allowed; subscribe to a topic"
    )
    assert _denied(browser, "chat..x", match="wildcard").error == NOT_AUTHORIZED


DENIED = {
    "nothing.here": "no topic 'nothing.here'",
    "chat.Upper": "no topic 'chat.Upper'",  # the channel's regex is lowercase
    "chat." + "x" * 40: "no topic 'chat." + "x" * 40 + "'",  # at most 32 characters
    "chat.general.extra": "no topic 'chat.general.extra'",
    "whisper.closed": "subscription refused",  # function handler returned False
    "user.alice": "sign in to receive private events",  # Reject from on_subscribe
    "boom.x": "internal error in the topic (logged)",  # on_subscribe raised
    "sandbar.topics.list": "no topic 'sandbar.topics.list'",
}


@WITH_PROXIES
@pytest.mark.parametrize("uri", sorted(DENIED))
def test_denied_subscriptions_reject_with_not_authorized_and_explain_why(client, uri):
    browser = client()
    error = _denied(browser, uri)
    assert error.error == NOT_AUTHORIZED
    assert browser.call("explain.subscribe", uri) == {
        "uri": uri,
        "allowed": False,
        "reason": DENIED[uri],
    }


@WITH_PROXIES
def test_a_raising_handler_is_logged_and_the_service_keeps_serving(client, router):
    browser = client()
    _denied(browser, "boom.y")
    log = router_topics_log(router)
    assert re.search(
        r"error in on_subscribe of topic 'boom.\{x\}' for 'boom.y' "
        r"\(session \d+, authid [\w-]+\): subscribe hook exploded",
        log,
    )
    browser.subscribe("chat.after-boom")
    with pytest.raises(ApplicationError) as info:  # a sender must pass on_subscribe first
        browser.call("boom.y", {"text": "x"})
    assert info.value.error == NOT_AUTHORIZED
    assert info.value.args[0] == "internal error in the topic (logged)"


def router_topics_log(router) -> str:
    path = router.proc.log_path.parent / "topics.log"
    return path.read_text()


@WITH_PROXIES
def test_welcome_reaches_only_the_newcomer_and_presence_reaches_the_others(client):
    alice, bob = client(), client()
    alice.subscribe("chat.presence")
    [welcome_a] = alice.wait_for(1, name="chat.welcome")
    assert welcome_a.args[0] == {"channel": "presence", "members": 1, "you": alice.session._authid}

    bob.subscribe("chat.presence")
    [welcome_b] = bob.wait_for(1, name="chat.welcome")
    assert welcome_b.args[0]["members"] == 2
    [join] = alice.wait_for(1, name="chat.join")
    assert join.args[0] == {"channel": "presence", "member": bob.session._authid, "members": 2}

    bob.close()  # leaving the session ends its subscriptions: on_unsubscribe runs
    [leave] = alice.wait_for(1, name="chat.leave")
    assert leave.args[0] == {"channel": "presence", "member": bob.session._authid, "members": 1}
    names = [e.kwargs["name"] for e in alice.events]
    assert names == ["chat.welcome", "chat.join", "chat.leave"], "one welcome, to alice only"
    assert [e.kwargs["name"] for e in bob.events] == ["chat.welcome"]


@WITH_PROXIES
def test_dropped_connection_also_counts_as_leaving(client):
    alice, bob = client(), client()
    alice.subscribe("chat.drops")
    bob.subscribe("chat.drops")
    alice.wait_for(1, name="chat.join")
    bob._thread.call(lambda: bob.session._transport.transport.abort())  # no goodbye, no close
    [leave] = alice.wait_for(1, name="chat.leave")
    assert leave.args[0]["members"] == 1


@WITH_PROXIES
def test_handled_publish_transforms_and_reaches_every_subscriber(client):
    alice, bob = client(), client()
    for each in (alice, bob):
        each.subscribe("chat.talk")
    bob.wait_for(1, name="chat.welcome")

    publication = alice.call("chat.talk", {"text": "  hello  "})
    assert isinstance(publication, int)
    for each in (alice, bob):
        [message] = each.wait_for(1, name="chat.message")
        assert message.args[0]["text"] == "hello"
        assert message.args[0]["author"] == alice.session._authid
        assert message.args[0]["channel"] == "talk"
        assert isinstance(message.args[0]["at"], int)
        assert re.fullmatch(r"[0-9a-f]{32}", message.kwargs["id"])


@WITH_PROXIES
@pytest.mark.parametrize(
    ("args", "error", "reason"),
    [
        (({"text": ""},), "sandbar.error.rejected", "a chat message needs some text"),
        (({"text": "x" * 501},), "sandbar.error.rejected", "limited to 500 characters"),
        (("just a string",), "sandbar.error.rejected", "a chat message needs some text"),
        (({"text": "a"}, {"text": "b"}), "sandbar.error.invalid_argument", "exactly one argument"),
    ],
)
def test_rejected_publish_reaches_nobody_and_the_caller_gets_the_reason(
    client, args, error, reason
):
    alice, bob = client(), client()
    for each in (alice, bob):
        each.subscribe("chat.strict")
    bob.wait_for(1, name="chat.welcome")
    with pytest.raises(ApplicationError) as info:
        alice.call("chat.strict", *args)
    assert info.value.error == error
    assert reason in info.value.args[0]
    alice.call("chat.strict", {"text": "marker"})  # a good one after the bad one
    bob.wait_for(1, name="chat.message")
    assert [e.args[0]["text"] for e in bob.events if e.kwargs["name"] == "chat.message"] == [
        "marker"
    ]


@WITH_PROXIES
def test_direct_publish_is_refused_on_handled_and_bridge_fed_topics(client):
    alice, bob = client(), client()
    bob.subscribe("chat.direct")
    bob.subscribe("articles")
    for uri in ("chat.direct", "articles", "nothing.here"):
        with pytest.raises(ApplicationError) as info:
            alice.publish(uri, {"text": "sneaky"})
        assert info.value.error == NOT_AUTHORIZED
    assert [e for e in bob.events if e.kwargs.get("name") != "chat.welcome"] == []


@WITH_PROXIES
def test_client_publish_topic_fans_out_directly_after_can_publish(client):
    alice, bob = client(), client()
    bob.subscribe("cursor.room1")
    alice.publish("cursor.room1", {"x": 1})
    [event] = bob.wait_for(1)
    assert event.args == ({"x": 1},)
    bob.subscribe("cursor.readonly-1")
    with pytest.raises(ApplicationError) as info:
        alice.publish("cursor.readonly-1", {"x": 2})
    assert info.value.error == NOT_AUTHORIZED


@WITH_PROXIES
@pytest.mark.parametrize(
    "procedure",
    [
        "sandbar.authorize",
        "wamp.session.kill",
        "wamp.session.list",
        "sandbar.bridge.stats",
        "sandbar.topics.list",
        "articles",
    ],
)
def test_browsers_cannot_call_backend_or_meta_procedures(client, procedure):
    with pytest.raises(ApplicationError) as info:
        client().call(procedure)
    assert info.value.error == NOT_AUTHORIZED


@WITH_PROXIES
def test_browsers_cannot_register(client):
    browser = client()
    with pytest.raises(ApplicationError) as info:
        browser._thread.call(browser.session.register, lambda: 1, "chat.general")
    assert info.value.error == NOT_AUTHORIZED


@WITH_PROXIES
def test_topic_code_addresses_an_authid_on_all_tabs_some_sessions_or_all_but_the_sender(
    client, router
):
    # Backend principals stand in for signed-in users (two tabs of "topics").
    tab1 = client(url=router.backend_url, authid="topics")
    tab2 = client(url=router.backend_url, authid="topics")
    other = client(url=router.backend_url, authid="bridge")
    browser = client()
    everyone = (tab1, tab2, other, browser)
    for each in everyone:
        each.subscribe("relay.inbox")

    def received(mode: str) -> list[bool]:
        return [any(e.args[0].get("mode") == mode for e in each.events) for each in everyone]

    assert browser.call("relay.authid", {"to": "topics", "mode": "authid"}) is None
    wait_until(lambda: received("authid")[:2] == [True, True], 5, "both tabs")
    browser.call("relay.sessions", {"to": other.id, "mode": "sessions"})
    wait_until(lambda: received("sessions")[2], 5, "that session")
    browser.call("relay.others", {"mode": "others"})
    wait_until(lambda: received("others")[:3] == [True, True, True], 5, "all but the sender")
    assert received("authid") == [True, True, False, False]
    assert received("sessions") == [False, False, True, False]
    assert received("others") == [True, True, True, False]


def _whoami(browser) -> dict:
    browser.subscribe("whoami")
    [me] = browser.wait_for(1, name="whoami")
    return dict(me.args[0])


def test_topics_sees_the_same_identities_behind_proxy_workers(session_routers, api):
    """Behind a proxy the router knows the session as ``cryptosign/anonymous-proxy``; topic
    code still sees the client's authmethod, and the same authid, authrole and authextra."""
    api.add_user("whoami-user")
    seen, welcomes = {}, {}
    for proxies in (0, 2):
        url = session_routers.get(proxies).ws_url
        anonymous, signed = Client(url), Client(url, authid="x", ticket=api.sign_in("whoami-user"))
        try:
            seen[proxies] = [_whoami(anonymous), _whoami(signed)]
            # the browser's WELCOME too: its own transport details are not sent back
            welcomes[proxies] = [
                sorted(anonymous.session._authextra),
                sorted(signed.session._authextra),
            ]
            assert seen[proxies][0]["authid"] == anonymous.session._authid
            assert verify(
                SECRET, signed.id, "whoami-user", signed.session._authextra["session_proof"]
            )
        finally:
            anonymous.close()
            signed.close()
    assert welcomes[0] == welcomes[2] == [[], ["expires_at", "session_proof", "user"]]
    for me in seen[0] + seen[2]:
        me.pop("peer")  # behind a proxy Crossbar gives the authorizer the proxy's transport
        me["authextra"].pop("expires_at", None)  # a token's own expiry
        for key in [key for key in me["authextra"] if key.startswith("x_cb_")]:
            del me["authextra"][key]  # Crossbar's own: node, worker, pid, peer
    for me in seen[0] + seen[2]:
        if me["authmethod"] == "anonymous":
            me["authid"] = "(random)"
    assert seen[0] == seen[2]
    assert seen[0][0] == {
        "authid": "(random)",
        "authrole": "anonymous",
        "authmethod": "anonymous",
        "authextra": {},
        "session_proof": False,
    }
    assert seen[0][1]["authid"] == "whoami-user"
    assert seen[0][1]["authmethod"] == "ticket"
    assert seen[0][1]["session_proof"] is True


@pytest.fixture(scope="module")
def senders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    """A router whose topics service serves tests/topics_senders_app.py."""
    workdir = tmp_path_factory.mktemp("senders")
    router = Router(workdir).start()
    with router, Topics(workdir, router, app="tests.topics_senders_app:topics").start():
        yield router


ALLOWED = None
#: (uri, how the browser sends) → None if it gets through, else (error, reason or None)
SENDS: dict[tuple[str, str], tuple[str, str | None] | None] = {
    ("room.lobby", "call"): ALLOWED,
    ("room.staff-ops", "call"): (NOT_AUTHORIZED, "staff only"),
    ("refusing.x", "call"): (
        NOT_AUTHORIZED,
        "only sessions that may subscribe to 'refusing.x' may send to it",
    ),
    ("inbox.support", "call"): ALLOWED,  # write_only_senders=True
    ("crash.x", "call"): (
        "sandbar.error.internal",
        "internal error in topic 'crash.{name}' (logged)",
    ),
    ("board.general", "publish"): ALLOWED,
    ("board.staff-ops", "publish"): (NOT_AUTHORIZED, None),  # the router gives no reason
    ("dropbox.support", "publish"): ALLOWED,  # write_only_senders=True
}


@pytest.mark.parametrize(("uri", "how"), sorted(SENDS))
def test_a_sender_must_pass_the_subscribe_decision_unless_the_topic_takes_write_only_senders(
    client, senders, uri, how
):
    reader = client(url=senders.backend_url, authid="topics")  # stands in for staff
    reader.subscribe(uri)
    marker = "board.marker" if how == "publish" else "room.marker"
    reader.subscribe(marker)
    browser = client(url=senders.ws_url)
    send = browser.publish if how == "publish" else browser.call
    expected = SENDS[(uri, how)]
    if expected is ALLOWED:
        send(uri, {"text": "hello"})
        wait_until(lambda: [e.topic for e in reader.events] == [uri], 5, f"{uri} delivered")
        return
    with pytest.raises(ApplicationError) as info:
        send(uri, {"text": "sneaky"})
    error, reason = expected
    assert info.value.error == error
    if reason is not None:
        assert info.value.args[0] == reason
    send(marker, {"text": "after"})  # same sender, same reader: it arrives after the other would
    wait_until(lambda: reader.events, 5, "the marker delivered")
    assert [e.topic for e in reader.events] == [marker], f"{uri} leaked to its reader"
    if error == NOT_AUTHORIZED:
        with pytest.raises(ApplicationError) as refused:
            browser.subscribe(uri)  # the same decision refuses the subscription
        assert refused.value.error == NOT_AUTHORIZED


def test_write_only_senders_still_cannot_read(client, senders):
    browser = client(url=senders.ws_url)
    for uri in ("inbox.support", "dropbox.support"):
        with pytest.raises(ApplicationError) as info:
            browser.subscribe(uri)
        assert info.value.error == NOT_AUTHORIZED
        assert browser.call("explain.subscribe", uri)["reason"] == "staff only"
