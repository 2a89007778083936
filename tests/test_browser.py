"""The demo page (web/) in real headless Chromium, against the real router, topics, bridge and API.

Each page runs in its own browser context, so it has its own WAMP session, as two people
would. A failed test saves every open page under .sandbar/screenshots/failures/; the last
test saves a screenshot of the working demo as .sandbar/screenshots/demo.png.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from playwright.sync_api import Browser, Page, expect

from bridge import EventSender
from tests.support.browser import SCREENSHOTS, Pages
from tests.support.events import article as article_payload
from tests.support.procs import (
    ROOT,
    SHIPPED_BRIDGE_CONFIG,
    Api,
    Bridge,
    Router,
    Topics,
    wait_until,
)
from tests.support.proxied import WITH_PROXIES

TIMINGS: dict[str, float] = {}


@pytest.fixture
def pages(chromium: Browser, request: pytest.FixtureRequest) -> Iterator[Pages]:
    made = Pages(chromium)
    yield made
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for path in made.screenshot_all(request.node.name):
            print(f"screenshot: {path}")
        print("browser console:", *made.console[-40:], sep="\n  ")
    made.close()


def start_api(workdir: Path, bridge: Bridge, router: Router, port: int | None = None) -> Api:
    """The real API, allowing the demo page's origin (the router's free port) by CORS."""
    api = Api(workdir, bridge.endpoint, port=port)
    api.proc.env["SANDBAR_API_CORS_ORIGINS"] = f"http://127.0.0.1:{router.port}"
    return api.start()


@pytest.fixture
def demo_api(router: Router, bridge: Bridge, tmp_path: Path, api_port: int) -> Iterator[Api]:
    api = start_api(tmp_path, bridge, router, port=api_port)
    yield api
    api.stop()


def unique_channel() -> str:
    return f"room-{uuid.uuid4().hex[:8]}"


def wait_open(page: Page, timeout: float = 10) -> None:
    expect(page.locator("#connection")).to_have_attribute(
        "data-state", "open", timeout=timeout * 1000
    )


def wait_joined(page: Page, channel: str, members: int, timeout: float = 10) -> None:
    """Joined ``channel``: its welcome arrived and the member count is ``members``."""
    expect(page.locator("#chat-title")).to_have_text(f"#{channel}")
    expect(page.locator("#chat-messages li.system[data-kind=welcome]").last).to_contain_text(
        f"Welcome to #{channel}", timeout=timeout * 1000
    )
    expect(page.locator("#chat-members")).to_have_text(
        f"{members} member{'s' if members != 1 else ''}"
    )
    expect(page.locator("#chat-text")).to_be_enabled()


def say(page: Page, text: str) -> None:
    page.fill("#chat-text", text)
    page.press("#chat-text", "Enter")


def post_article(api: Api, title: str, body: str = "Pushed by Sandbar.") -> dict[str, Any]:
    response = requests.post(
        f"{api.url}/articles", json={"title": title, "body": body}, headers=api.auth, timeout=5
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def article(page: Page, article_id: int) -> Any:
    return page.locator(f'#feed-list li[data-id="{article_id}"]')


@WITH_PROXIES
def test_page_loads_and_connects(pages, router):
    pages.point_at(router.port)
    started = time.monotonic()
    page = pages.open(channel=(channel := unique_channel()))
    wait_open(page)
    TIMINGS["connect"] = time.monotonic() - started
    expect(page.locator("#connection-label")).to_have_text("Open")
    expect(page.locator("#connection-detail")).to_contain_text("session ")
    # Subscribed; no API runs here, so only the history of earlier articles is missing.
    expect(page.locator("#feed-status")).to_have_attribute("data-kind", "warn")
    expect(page.locator("#feed-status")).to_contain_text("could not be loaded")
    wait_joined(page, channel, members=1)
    assert page.title() == "Sandbar demo"
    print(f"\npage open and connected in {TIMINGS['connect']:.2f}s")


# One session per serializer the page's AutobahnJS has, each subscribed to `articles` and
# asking the topics service a question; the events they get are kept in window.received.
SESSION_PER_SERIALIZER = """async ([url, names]) => {
  window.received = {};
  const opened = {};
  for (const name of names) {
    window.received[name] = [];
    opened[name] = await new Promise((resolve) => {
      setTimeout(() => resolve({hung: "no WELCOME, subscribe or call result in 10 s"}), 10000);
      const connection = new autobahn.Connection({
        url, realm: "sandbar", max_retries: 0, use_es6_promises: true,
        serializers: [new autobahn.serializer[name]()],
      });
      connection.onopen = async (session) => {
        await session.subscribe("articles", (args, kwargs) => {
          window.received[name].push({args, kwargs});
        });
        const explained = await session.call("explain.subscribe", ["chat.general"]);
        resolve({protocol: connection.transport.info.protocol, explained});
      };
      connection.onclose = (reason, details) => {
        resolve({closed: reason, message: details.message});
      };
      connection.open();
    });
  }
  return opened;
}"""
SERIALIZERS = {"JSONSerializer": "json", "MsgpackSerializer": "msgpack", "CBORSerializer": "cbor"}


@WITH_PROXIES
def test_page_runs_the_pinned_autobahnjs_with_every_serializer(pages, router, bridge):
    """web/vendor/autobahn.min.js is the AutobahnJS release package-lock.json pins, as
    `make install` bundles it; JSON, MessagePack and CBOR (all three were in the old
    prebuilt bundle) each get a session, a call's result and an event with its kwargs."""
    lock = json.loads((ROOT / "package-lock.json").read_text())
    pinned = lock["packages"]["node_modules/autobahn"]["version"]
    pages.point_at(router.port)
    page = pages.open(channel=unique_channel())
    wait_open(page)
    assert page.evaluate("autobahn.version") == pinned
    opened = page.evaluate(SESSION_PER_SERIALIZER, [router.ws_url, list(SERIALIZERS)])
    assert {name: o.get("protocol") for name, o in opened.items()} == {
        name: f"wamp.2.{ident}" for name, ident in SERIALIZERS.items()
    }, opened
    answers = [o["explained"] for o in opened.values()]
    assert answers[0] and answers == [answers[0]] * len(answers), answers

    sent = article_payload("Über café ✓ 🚀", id=7)
    EventSender(bridge.endpoint).send("article.created", sent)
    wait_until(
        lambda: all(page.evaluate("window.received")[name] for name in SERIALIZERS),
        10,
        "the event reached the session of every serializer",
    )
    received = page.evaluate("window.received")
    for name in SERIALIZERS:
        [event] = received[name]
        assert event["args"] == [sent], (name, event)
        assert event["kwargs"] == received["JSONSerializer"][0]["kwargs"], (name, event)
    print(f"\nAutobahnJS {pinned} in Chromium: {', '.join(SERIALIZERS.values())} all served")


@WITH_PROXIES
def test_posted_article_appears_in_the_feed_within_2s(pages, router, demo_api):
    earlier = post_article(demo_api, "Published before the page opened")
    pages.point_at(router.port, demo_api.url)
    page = pages.open(channel=unique_channel())
    wait_open(page)
    expect(page.locator("#feed-status")).to_have_attribute("data-kind", "live")
    expect(article(page, earlier["id"])).to_have_attribute("data-live", "false")  # GET, by CORS

    started = time.monotonic()
    created = post_article(demo_api, "Hello from curl", "Through the API, bridge and router.")
    item = article(page, created["id"])
    expect(item).to_be_visible(timeout=2000)
    TIMINGS["post_to_feed"] = time.monotonic() - started
    expect(item).to_have_attribute("data-live", "true")
    expect(item.locator(".article-title")).to_have_text("Hello from curl")
    expect(page.locator("#feed-list li").first).to_have_attribute("data-id", str(created["id"]))

    # The page's own form: writing needs a sign-in, and the refusal says so.
    page.fill("#article-form [name=title]", "Anonymous")
    page.fill("#article-form [name=body]", "Not signed in.")
    page.click("#article-form button[type=submit]")
    expect(page.locator("#article-status")).to_contain_text("Authorization: Bearer")
    # Signed in (the top bar's form), the page reconnects with its token as the WAMP ticket:
    # a cross-origin POST to the API, then the pushed event.
    demo_api.add_user("pagewriter")
    page.fill("#signin-form [name=username]", "pagewriter")
    page.fill("#signin-form [name=password]", "correct horse battery")
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#account-user")).to_have_text("pagewriter")
    wait_open(page)
    expect(page.locator("#connection-detail")).to_contain_text("session ")
    page.fill("#article-form [name=title]", "Hello from the form")
    page.fill("#article-form [name=body]", "Typed into the demo page.")
    page.click("#article-form button[type=submit]")
    expect(page.locator("#article-status")).to_contain_text("Created #")
    expect(page.locator("#feed-list li").first.locator(".article-title")).to_have_text(
        "Hello from the form", timeout=2000
    )
    # An invalid article is refused by the API with its reason.
    page.fill("#article-form [name=title]", "No body")
    page.click("#article-form button[type=submit]")
    expect(page.locator("#article-status")).to_have_text("body: must not be empty")
    print(f"\nPOST → visible in the feed: {TIMINGS['post_to_feed'] * 1000:.0f} ms")


@WITH_PROXIES
def test_two_people_chat_join_and_leave(pages, router):
    pages.point_at(router.port)
    channel = unique_channel()
    alice = pages.open(channel=channel)
    wait_joined(alice, channel, members=1)
    bob = pages.open(channel=channel)
    wait_joined(bob, channel, members=2)
    expect(alice.locator("#chat-messages li.system[data-kind=join]")).to_have_text(
        [own_name(bob) + " joined."]
    )
    expect(alice.locator("#chat-members")).to_have_text("2 members")

    started = time.monotonic()
    say(bob, "Hi Alice, it's Bob.")
    expect(alice.locator("#chat-messages .message-text")).to_have_text(["Hi Alice, it's Bob."])
    TIMINGS["chat_message"] = time.monotonic() - started
    expect(bob.locator("#chat-messages li.message")).to_have_attribute("data-mine", "true")
    say(alice, "Hello Bob!")
    expect(bob.locator("#chat-messages .message-text")).to_have_text(
        ["Hi Alice, it's Bob.", "Hello Bob!"]
    )
    expect(bob.locator("#chat-messages li.message").last.locator(".author")).to_have_text(
        alice_name := own_name(alice)
    )
    assert alice_name != own_name(bob)

    bob.click("#chat-leave")
    expect(bob.locator("#chat-title")).to_have_text("No channel")
    expect(bob.locator("#chat-text")).to_be_disabled()
    expect(alice.locator("#chat-messages li.system[data-kind=leave]")).to_have_text(
        [own_name(bob) + " left."]
    )
    expect(alice.locator("#chat-members")).to_have_text("1 member")
    print(f"\nchat message from one browser to the other: {TIMINGS['chat_message'] * 1000:.0f} ms")


def own_name(page: Page) -> str:
    """The short name the page shows for its own session, read from its welcome."""
    text = page.locator("#chat-messages li.system[data-kind=welcome]").last.inner_text()
    return text.split("You are ", 1)[1].split(";", 1)[0]


@WITH_PROXIES
def test_refusals_show_their_reasons(pages, router):
    pages.point_at(router.port)
    page = pages.open(channel="Bad")  # chat.Bad: a valid WAMP URI outside the channel pattern
    wait_open(page)
    notice = page.locator("#chat-notice")
    expect(notice).to_contain_text("Could not join #Bad: no topic 'chat.Bad'")
    expect(notice).to_contain_text("wamp.error.not_authorized")
    refusal = page.locator("#refusal-list li.refusal").first
    expect(refusal).to_contain_text("join #Bad")
    expect(refusal.locator(".refusal-error")).to_have_text("wamp.error.not_authorized")
    expect(refusal.locator(".refusal-reason")).to_have_text("no topic 'chat.Bad'")

    channel = unique_channel()
    page.fill("#channel-name", channel)
    page.press("#channel-name", "Enter")
    wait_joined(page, channel, members=1)
    expect(notice).to_be_hidden()

    send_error = page.locator("#chat-send-error")
    say(page, "   ")
    expect(send_error).to_contain_text("Not sent: a chat message needs some text")
    expect(send_error).to_contain_text("sandbar.error.rejected")
    say(page, "x" * 501)
    expect(send_error).to_contain_text("chat messages are limited to 500 characters")
    expect(page.locator("#refusal-list .refusal-reason")).to_have_text(
        [
            "chat messages are limited to 500 characters",
            "a chat message needs some text: call with [{text: '...'}]",
            "no topic 'chat.Bad'",
        ]
    )
    expect(page.locator("#refusal-count")).to_have_text("3")
    say(page, "fine now")
    expect(send_error).to_be_hidden()
    expect(page.locator("#chat-messages .message-text")).to_have_text(["fine now"])


def _fast_bridge_config() -> dict[str, Any]:
    config = yaml.safe_load(SHIPPED_BRIDGE_CONFIG.read_text())
    config["router"].update(retry_initial_delay=0.1, retry_max_delay=0.5)
    return dict(config)


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[tuple[Router, Bridge, Api]]:
    """A stack of its own, for a test that restarts the router."""
    with contextlib.ExitStack() as started:  # stops whatever did start, in reverse order
        router = Router(tmp_path).start()
        started.callback(router.stop)
        topics = Topics(tmp_path, router).start()
        started.callback(topics.stop)
        bridge = Bridge(tmp_path, router, _fast_bridge_config()).start()
        started.callback(bridge.stop)
        api = start_api(tmp_path, bridge, router)
        started.callback(api.stop)
        yield router, bridge, api


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_page_reconnects_after_router_restart_and_keeps_receiving(pages, own_stack, how):
    router, bridge, api = own_stack
    pages.point_at(router.port, api.url)
    channel = unique_channel()
    page = pages.open(channel=channel)
    wait_joined(page, channel, members=1)
    before = post_article(api, f"Before the {how} restart")
    expect(article(page, before["id"])).to_have_attribute("data-live", "true", timeout=5000)

    if how == "SIGKILL":
        os.killpg(router.proc.pid, signal.SIGKILL)
    router.stop()
    expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#connection-detail")).to_contain_text("attempt")
    expect(page.locator("#chat-text")).to_be_disabled()
    # Committed while the page is away: it arrives live or, if it went out before the page
    # was back, through the catch-up (GET /events) the page makes on reconnecting.
    away = post_article(api, f"During the {how} restart")
    router.start()
    restarted = time.monotonic()

    wait_open(page, timeout=30)
    TIMINGS[f"reconnect_{how}"] = time.monotonic() - restarted
    expect(page.locator("#feed-status")).to_have_attribute("data-kind", "live", timeout=20_000)
    wait_joined(page, channel, members=1, timeout=20)
    wait_until(lambda: bridge.stats()["connected"], 20, "bridge reconnected", interval=0.1)

    expect(article(page, away["id"])).to_be_visible(timeout=10_000)
    print(
        f"\narticle posted while away shown as: {article(page, away['id']).get_attribute('data-live')}"
    )
    created = post_article(api, f"After the {how} restart")
    expect(article(page, created["id"])).to_have_attribute("data-live", "true", timeout=5000)
    say(page, "still here")
    expect(page.locator("#chat-messages .message-text")).to_have_text(["still here"])
    print(
        f"\nrouter restarted ({how}): page open again {TIMINGS[f'reconnect_{how}']:.2f}s "
        "after the router was back"
    )


def test_demo_screenshot(pages, router, demo_api):
    """A picture of the working demo for the README: articles, a chat, refusals."""
    for title, body in [
        ("Harbour webcams are back", "All six cameras stream again after the storm repairs."),
        (
            "Tide tables for December",
            "High water at 06:12 and 18:40 on the 1st; springs on the 4th.",
        ),
    ]:
        post_article(demo_api, title, body)
    pages.point_at(router.port, demo_api.url)
    alice = pages.open(channel="Bad")
    expect(alice.locator("#refusal-list li")).to_have_count(1)
    alice.click('[data-channel="general"]')
    wait_joined(alice, "general", members=1)
    bob = pages.open(channel="general")
    wait_joined(bob, "general", members=2)
    say(bob, "Morning! Are the December tide tables out yet?")
    expect(alice.locator("#chat-messages li.message")).to_have_count(1)
    say(alice, "Publishing them now, watch the feed.")
    expect(bob.locator("#chat-messages li.message")).to_have_count(2)
    created = post_article(
        demo_api, "Sandbar demo is live", "REST API → ZeroMQ → Crossbar → your browser."
    )
    expect(article(alice, created["id"])).to_be_visible()
    say(bob, "Got it, it just popped up here.")
    expect(alice.locator("#chat-messages li.message")).to_have_count(3)
    say(alice, " ")
    expect(alice.locator("#chat-send-error")).to_be_visible()
    alice.fill("#chat-text", "")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / "demo.png"
    alice.screenshot(path=str(path), full_page=True)
    print(f"\nscreenshot: {path}\ntimings: {TIMINGS}")
