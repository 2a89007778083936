"""The topics service is the browsers' authorizer: it fails closed, and replicas cover each other."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from autobahn.wamp.exception import ApplicationError

from tests.support.procs import Router, Topics, wait_until
from tests.support.wamp import Client


@pytest.fixture
def own_router(tmp_path: Path) -> Iterator[Router]:
    router = Router(tmp_path).start()
    yield router
    router.stop()


def _subscribe_error(browser: Client, uri: str) -> str | None:
    try:
        browser.subscribe(uri)
    except ApplicationError as exc:
        return exc.error
    return None


def test_topics_down_fails_closed_and_recovers(own_router, tmp_path):
    topics = Topics(tmp_path, own_router).start()
    browser = Client(own_router.ws_url)
    try:
        assert _subscribe_error(browser, "chat.before") is None

        os.killpg(topics.proc.pid, signal.SIGKILL)
        topics.proc.stop()
        errors = {_subscribe_error(browser, f"chat.down{i}") for i in range(5)}
        print(f"\nwhile the topics service is down, subscribes fail with: {errors}")
        assert errors == {"wamp.error.authorization_failed"}, "denied, never allowed"
        with pytest.raises(ApplicationError):
            browser.call("chat.down0", {"text": "hi"})

        topics.start()
        assert _subscribe_error(browser, "chat.after") is None
    finally:
        browser.close()
        topics.stop()


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_two_replicas_one_stopped_no_authorization_outage(own_router, tmp_path, how):
    first = Topics(tmp_path, own_router, name="topics-1").start()
    second = Topics(tmp_path, own_router, name="topics-2").start()
    browsers: list[Client] = []
    try:
        leader, survivor = (first, second) if "(leader)" in first.proc.output() else (second, first)
        browser = Client(own_router.ws_url)
        browsers.append(browser)
        for i in range(10):
            assert _subscribe_error(browser, f"chat.warm{i}") is None

        os.killpg(leader.proc.pid, how)
        killed_at = time.monotonic()
        results = [_subscribe_error(browser, f"chat.after{i}") for i in range(40)]
        print(
            f"\nafter {how.name} of one replica: {results.count(None)}/40 subscribes allowed, "
            f"failures: {[r for r in results if r]}"
        )
        if how == signal.SIGTERM:
            assert results == [None] * 40, "a graceful stop costs no request"
        else:
            # Only the call already on its way to the dying replica may fail; none after it.
            assert results[1:] == [None] * 39, "the survivor authorizes everything after the kill"

        # The survivor takes over the lifecycle hooks: newcomers are welcomed again.
        wait_until(lambda: "(leader)" in survivor.proc.output(), 10, "survivor leads")
        newcomer = Client(own_router.ws_url)
        browsers.append(newcomer)
        newcomer.subscribe("chat.welcome-back")
        [welcome] = newcomer.wait_for(1, name="chat.welcome")
        print(f"welcome again {time.monotonic() - killed_at:.1f}s after the kill")
        assert welcome.args[0]["members"] == 1
        assert "error" not in survivor.proc.output().lower()
    finally:
        for each in browsers:
            each.close()
        first.stop()
        second.stop()
