"""The inspector page (web/inspect/) in real headless Chromium, against the real router,
topics service, bridge and API: a staff user sees other browsers' sessions, taps a topic,
publishes through the real path and asks "why not?"; anyone else sees nothing.

Each page runs in its own browser context (its own WAMP session). The last test saves a
screenshot of the working page as .sandbar/screenshots/inspector.png (docs/inspector.png
is one of those).
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from autobahn.wamp.exception import ApplicationError
from playwright.sync_api import Page, expect

from tests.support.browser import SCREENSHOTS, Pages
from tests.support.procs import SHIPPED_BRIDGE_CONFIG, Api, Bridge, Router
from tests.support.proxied import WITH_PROXIES
from tests.support.wamp import Client
from tests.test_browser import pages, wait_open

__all__ = ["pages"]  # a fixture, imported for this module's tests

INSPECT = "/inspect/"
PASSWORD = "correct horse battery"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#: the excluded-by-addressing case: an event on a shared topic for some of its readers only
MEMO = "article.memo"


def routes() -> dict[str, Any]:
    """The shipped routes, and one that addresses a shared topic's events to some readers
    (``to_authids``): how an app sends, on ``articles``, a memo for named users only."""
    config = yaml.safe_load(SHIPPED_BRIDGE_CONFIG.read_text())
    config["routes"][MEMO] = {"topic": "articles", "to_authids": "readers"}
    return dict(config)


@pytest.fixture
def stack(router: Router, tmp_path: Path, api_port: int) -> Iterator[tuple[Router, Bridge, Api]]:
    """The session's router and topics service, with a bridge and an API of the test's own
    (the API allows the pages' origin by CORS and knows the memo route)."""
    config = routes()
    routes_file = tmp_path / "routes.yaml"
    routes_file.write_text(yaml.safe_dump(config))
    with contextlib.ExitStack() as started:
        bridge = Bridge(tmp_path, router, config).start()
        started.callback(bridge.stop)
        api = Api(tmp_path, bridge.endpoint, port=api_port, routes_config=str(routes_file))
        api.proc.env["SANDBAR_API_CORS_ORIGINS"] = f"http://127.0.0.1:{router.port}"
        api.start()
        started.callback(api.stop)
        yield router, bridge, api


def user(api: Api, name: str, role: str = "user") -> str:
    """A unique account (the session's router outlives each test's database)."""
    username = f"{name}{uuid.uuid4().hex[:6]}"
    api.add_user(username, PASSWORD, role=role)
    return username


def sign_in(page: Page, username: str) -> None:
    page.fill("#signin-form [name=username]", username)
    page.fill("#signin-form [name=password]", PASSWORD)
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#account-user")).to_have_text(username)


def open_inspector(pages: Pages, api: Api, staff: str) -> Page:
    page = pages.open(INSPECT)
    expect(page.get_by_test_id("gate")).to_contain_text("Sign in with a staff account")
    sign_in(page, staff)
    wait_open(page)
    expect(page.get_by_test_id("inspector")).to_be_visible()
    return page


def session_id(page: Page) -> int:
    """The WAMP session id a page shows in its connection badge ("session N · ...")."""
    detail = page.locator("#connection-detail").inner_text()
    return int(detail.split("session ", 1)[1].split(" ", 1)[0])


def post_article(api: Api, title: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = requests.post(
        f"{api.url}/articles",
        json={"title": title, "body": "Through the API, bridge and router."},
        headers={**api.auth, **(headers or {})},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def staff_publish(api: Api, token: str, event: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(
        f"{api.url}/inspect/api/publish",
        json={"event": event, "payload": payload},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    return dict(response.json())


def start_tap(page: Page, pattern: str) -> None:
    page.get_by_test_id("tap-pattern").fill(pattern)
    page.get_by_test_id("tap-start").click()
    expect(page.get_by_test_id("tap-status")).to_contain_text(f"Tapping {pattern}")


def tap_row(page: Page, **data: str) -> Any:
    attrs = "".join(f'[data-{key}="{value}"]' for key, value in data.items())
    return page.locator(f"[data-testid=tap-row]{attrs}")


def ask_why(page: Page, who: str, what: str, kind: str = "event") -> Any:
    """Ask the "why not?" panel; its verdict line once the answer is in."""
    page.get_by_test_id("why-who").fill(who)
    page.get_by_test_id("why-what-kind").select_option(kind)
    page.get_by_test_id("why-what").fill(what)
    page.get_by_test_id("why-ask").click()
    verdict = page.get_by_test_id("why-verdict")
    expect(verdict).not_to_have_attribute("data-verdict", "pending", timeout=10_000)
    return verdict


@WITH_PROXIES
def test_staff_sees_the_sessions_of_two_other_browsers(pages, stack):
    router, _, api = stack
    pages.point_at(router.port, api.url)
    readers = {}
    for name in ("bea", "cal"):
        reader = pages.open(channel="general")
        username = user(api, name)
        sign_in(reader, username)
        wait_open(reader)
        expect(reader.locator("#feed-status")).to_have_attribute("data-kind", "live")
        readers[username] = session_id(reader)
    staff = user(api, "ann", role="staff")
    page = open_inspector(pages, api, staff)

    for username, session in readers.items():
        row = page.locator(f'[data-testid=session-row][data-authid="{username}"]')
        expect(row).to_have_attribute("data-session", str(session))
        expect(row).to_have_attribute("data-role", "user")
        for uri in ("articles", "chat.general"):
            expect(
                row.locator("code.sub", has_text=re.compile(f"^{re.escape(uri)}$"))
            ).to_be_visible()
    me = page.locator(f'[data-testid=session-row][data-authid="{staff}"]')
    expect(me).to_have_attribute("data-session", str(session_id(page)))
    expect(me).to_have_attribute("data-role", "staff")
    expect(page.locator('[data-testid=topic-row][data-uri="articles"]')).to_be_visible()
    for service in ("router", "topics", "bridge", "api"):
        expect(page.get_by_test_id(f"service-{service}")).to_have_attribute("data-state", "ok")

    # a reader leaves: gone from the list at the next refresh (every 3 s)
    gone = next(iter(readers))
    pages.opened[0][0].close()
    expect(page.locator(f'[data-testid=session-row][data-authid="{gone}"]')).to_have_count(
        0, timeout=10_000
    )


def test_the_tap_shows_a_posted_article_with_its_trace_id(pages, stack):
    router, _, api = stack
    pages.point_at(router.port, api.url)
    page = open_inspector(pages, api, user(api, "ann", role="staff"))
    start_tap(page, "articles")

    assert api.auth  # the writer's account is made before the clock starts
    started = time.monotonic()
    created = post_article(api, "Tapped on its way", headers={"traceparent": TRACEPARENT})
    row = tap_row(page, name="article.created", trace=TRACEPARENT.split("-")[1])
    expect(row).to_be_visible(timeout=5000)
    print(f"\nPOST → in the tap: {(time.monotonic() - started) * 1000:.0f} ms")
    expect(row.get_by_test_id("tap-trace")).to_have_text(TRACEPARENT.split("-")[1])
    expect(row).to_contain_text("Tapped on its way")
    expect(row).to_contain_text(f'"id":{created["id"]}')
    expect(page.get_by_test_id("tap-dropped")).to_have_attribute("data-dropped", "0")

    # the filter hides what does not match; pause holds new events until resumed
    started = time.monotonic()
    post_article(api, "Another one")
    expect(tap_row(page, name="article.created")).to_have_count(2)
    print(f"POST → in the tap, the next one: {(time.monotonic() - started) * 1000:.0f} ms")
    page.get_by_test_id("tap-filter").fill("tapped on its")
    expect(page.locator("[data-testid=tap-row]:visible")).to_have_count(1)
    page.get_by_test_id("tap-filter").fill("")
    page.get_by_test_id("tap-pause").click()
    post_article(api, "Held while paused")
    expect(page.get_by_test_id("tap-status")).to_contain_text("1 event held")
    expect(tap_row(page, name="article.created")).to_have_count(2)
    page.get_by_test_id("tap-pause").click()
    expect(tap_row(page, name="article.created")).to_have_count(3)
    expect(tap_row(page).first).to_contain_text("Held while paused")

    # stopped (inspect.tap.stop): nothing more arrives
    page.get_by_test_id("tap-stop").click()
    expect(page.get_by_test_id("tap-status")).to_have_text("Stopped.")
    post_article(api, "After the tap stopped")
    page.wait_for_timeout(1000)  # it would have shown in ~100 ms
    expect(tap_row(page, name="article.created")).to_have_count(3)


def test_the_publish_form_reaches_a_subscriber_page(pages, stack):
    router, _, api = stack
    pages.point_at(router.port, api.url)
    reader = pages.open(channel="general")
    wait_open(reader)
    expect(reader.locator("#feed-status")).to_have_attribute("data-kind", "live")
    page = open_inspector(pages, api, user(api, "ann", role="staff"))
    page.locator('[data-testid=topic-row][data-uri="articles"] button').click()  # tap it
    expect(page.get_by_test_id("tap-status")).to_contain_text("Tapping articles")

    expect(page.get_by_test_id("publish-event")).to_have_value("article.created")
    expect(page.get_by_test_id("publish-payload")).to_have_value(re.compile('"title"'))
    page.get_by_test_id("publish-payload").fill(
        '{"id": 9001, "title": "Sent from the inspector", "body": "A test event.",'
        ' "created_at": "2026-12-01T12:00:00Z"}'
    )
    page.get_by_test_id("publish-send").click()
    answer = page.get_by_test_id("publish-answer")
    expect(answer).to_have_attribute("data-kind", "ok")
    expect(answer).to_contain_text("Accepted: article.created")
    event_id = answer.get_attribute("data-id")
    assert event_id
    item = reader.locator('#feed-list li[data-id="9001"]')
    expect(item.locator(".article-title")).to_have_text("Sent from the inspector")
    expect(item).to_have_attribute("data-live", "true")
    expect(tap_row(page, id=event_id)).to_be_visible()

    # a payload that does not fit the event's schema: the API's error, with the field
    page.get_by_test_id("publish-payload").fill('{"id": "nine", "title": ""}')
    page.get_by_test_id("publish-send").click()
    expect(answer).to_have_attribute("data-kind", "error")
    expect(answer).to_contain_text("Refused: 400")
    page.get_by_test_id("publish-payload").fill("{not json")
    page.get_by_test_id("publish-send").click()
    expect(answer).to_contain_text("The payload is not JSON")


def test_why_not_answers_four_prepared_cases(pages, stack):
    router, _, api = stack
    pages.point_at(router.port, api.url)
    staff = user(api, "ann", role="staff")
    page = open_inspector(pages, api, staff)
    answers = prepare_and_ask(page, router, api, staff)
    for case, (verdict, text) in answers.items():
        print(f"\n{case}: [{verdict}] {text}")


def prepare_and_ask(page: Page, router: Router, api: Api, staff: str) -> dict[str, tuple[str, str]]:
    """The four cases, each with users of its own: delivered, refused (with the reason),
    not subscribed at the time, excluded by addressing. Returns case → (verdict, the
    verdict line the page shows)."""
    names = {case: user(api, case) for case in ("dora", "eve", "gus", "hal", "ivy")}
    clients = {
        case: Client(router.ws_url, authid=name, ticket=api.sign_in(name))
        for case, name in names.items()
    }
    token = api.sign_in(staff)
    try:
        clients["dora"].subscribe("articles")
        clients["hal"].subscribe("articles")
        clients["ivy"].subscribe("articles")
        with pytest.raises(ApplicationError, match="not_authorized"):
            clients["eve"].subscribe(f"user.{names['dora']}")  # dora's private topic
        article = post_article(api, "Why-not material")
        note = staff_publish(
            api, token, "user.notified", {"user": names["dora"], "text": "hi", "from": staff}
        )
        memo = staff_publish(api, token, MEMO, {"readers": [names["ivy"]], "text": "ivy only"})
        clients["dora"].wait_for(1, name="article.created")
        clients["ivy"].wait_for(1, name=MEMO)
        event = wait_event_id(api, article)
        clients["gus"].subscribe("articles")  # after the article was published
        cases = [
            ("delivered", names["dora"], event, "delivered"),
            ("refused", names["eve"], note["id"], "refused"),
            ("not subscribed", names["gus"], event, "not_subscribed"),
            ("excluded", names["hal"], memo["id"], "excluded"),
        ]
        answers = {}
        for case, who, what, expected in cases:
            verdict = ask_why(page, who, what)
            expect(verdict).to_have_attribute("data-verdict", expected)
            expect(page.locator("[data-testid=why-step][data-check=committed]")).to_have_attribute(
                "data-ok", "true"
            )
            answers[case] = (expected, verdict.inner_text())
        # the same question by session id instead of user
        page.get_by_test_id("why-who-kind").select_option("session")
        verdict = ask_why(page, str(clients["dora"].id), event)
        expect(verdict).to_have_attribute("data-verdict", "delivered")
        expect(verdict).to_contain_text(f"delivered to session [{clients['dora'].id}]")
        page.get_by_test_id("why-who-kind").select_option("authid")
        # an event nobody committed: both parts say so
        verdict = ask_why(page, names["dora"], "0" * 32)
        expect(verdict).to_have_attribute("data-verdict", "not_published")
        committed = page.locator("[data-testid=why-step][data-check=committed]")
        expect(committed).to_have_attribute("data-ok", "false")
        expect(committed).to_contain_text("never committed here")
        assert "this topic belongs to another user" in answers["refused"][1], answers
        assert "after the publish" in answers["not subscribed"][1], answers
        assert "to_authids" in answers["excluded"][1], answers
        return answers
    finally:
        for client in clients.values():
            client.close()


def wait_event_id(api: Api, article: dict[str, Any]) -> str:
    """The event id of an article's event (its outbox row, through GET /events)."""
    rows = requests.get(f"{api.url}/events?topic=articles&after=0&limit=500", timeout=5).json()
    [row] = [r for r in rows["events"] if r["payload"].get("id") == article["id"]]
    return str(row["id"])


def test_a_user_who_is_not_staff_sees_nothing(pages, stack):
    router, _, api = stack
    pages.point_at(router.port, api.url)
    page = pages.open(INSPECT)
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    expect(page.get_by_test_id("gate")).to_contain_text("Sign in with a staff account")
    expect(page.get_by_test_id("inspector")).to_be_hidden()
    assert page.title() == "Sandbar inspector"

    sign_in(page, username := user(api, "uma"))
    gate = page.get_by_test_id("gate")
    expect(gate).to_contain_text("This page is for staff")
    expect(gate).to_contain_text(f"{username} is not a staff account (role 'user')")
    expect(page.get_by_test_id("inspector")).to_be_hidden()
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "closed")
    page.wait_for_timeout(1000)  # what a page would have asked for by now
    assert sockets == [], "a non-staff page opened no WAMP connection"
    for table in ("sessions", "topics", "tap-events"):
        expect(page.get_by_test_id(table).locator("tbody tr")).to_have_count(0)
    expect(page.get_by_test_id("services").locator("li")).to_have_count(0)

    page.click("#signout")
    expect(page.get_by_test_id("gate")).to_contain_text("Sign in with a staff account")


def test_inspector_screenshot(pages, stack):
    """A picture of the working page for the README: sessions, a tap, a why-not answer."""
    router, _, api = stack
    pages.point_at(router.port, api.url)
    readers = [user(api, name) for name in ("bea", "cal")]
    for name in readers:
        reader = pages.open(channel="general")
        sign_in(reader, name)
        wait_open(reader)
        expect(reader.locator("#feed-status")).to_have_attribute("data-kind", "live")
    page = open_inspector(pages, api, user(api, "ann", role="staff"))
    expect(page.locator("[data-testid=session-row]")).not_to_have_count(0)
    start_tap(page, "articles")
    created = post_article(api, "Tide tables for December", headers={"traceparent": TRACEPARENT})
    expect(tap_row(page, name="article.created")).to_have_count(1)
    tap_row(page, name="article.created").locator("button.why").click()
    expect(page.get_by_test_id("why-what")).to_have_value(wait_event_id(api, created))
    verdict = ask_why(page, readers[0], wait_event_id(api, created))
    expect(verdict).to_have_attribute("data-verdict", "delivered")
    expect(page.locator("[data-testid=why-step][data-ok=true]")).to_have_count(6)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / "inspector.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"\nscreenshot: {path}")


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/inspect/api/publish"), ("GET", "/inspect/api/events/x")]
)
def test_the_api_answers_the_pages_preflight(stack, method, path):
    """The page sends its staff token in a header, so the browser asks first (a CORS
    preflight, without the token): answered with the CORS headers, not refused with 401."""
    router, _, api = stack
    origin = f"http://127.0.0.1:{router.port}"
    response = requests.options(
        f"{api.url}{path}",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type",
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
    # the request itself is still checked
    assert requests.request(method, f"{api.url}{path}", timeout=10).status_code == 401
