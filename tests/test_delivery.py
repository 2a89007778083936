"""No event lost, none delivered twice: the outbox, the acknowledged hand-off, per-topic
sequence numbers and catch-up, proven by killing real processes mid-stream, on SQLite
and on a real PostgreSQL server (sandbar/pgserver.py)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.support.catchup import CatchUpSubscriber
from tests.support.procs import Api, Bridge, Router, Topics, wait_until

EVENTS = 2000


@dataclass
class Stack:
    router: Router
    topics: Topics
    bridge: Bridge
    api: Api
    subscriber: CatchUpSubscriber

    def committed(self) -> list[int]:
        """Every article event the database holds: the truth to compare against."""
        return query(
            self.api.database_url, "SELECT seq FROM outbox WHERE topic = 'articles' ORDER BY seq"
        )

    def undelivered(self) -> int:
        return query(
            self.api.database_url, "SELECT count(*) FROM outbox WHERE delivered_at IS NULL"
        )[0]


def query(database_url: str, sql: str) -> list[int]:
    """The first column of ``sql``'s rows, read straight from the API's database."""
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [int(value) for (value,) in conn.execute(text(sql))]
    finally:
        engine.dispose()


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[Stack]:
    with contextlib.ExitStack() as running:  # stops what started, even if a later start fails
        router = running.enter_context(Router(tmp_path).start())
        topics = running.enter_context(Topics(tmp_path, router).start())
        bridge = running.enter_context(Bridge(tmp_path, router).start())
        api = Api(
            tmp_path,
            bridge.endpoint,
            workers=2,
            database_url=database_url,
            outbox_lease_seconds="1",
        )
        running.enter_context(api.start())
        subscriber = CatchUpSubscriber(router.ws_url, "articles", api.url)
        subscriber.start()
        stack = Stack(router, topics, bridge, api, subscriber)
        running.callback(lambda: stack.subscriber.close())
        yield stack


def post_stream(api: Api, count: int, fault: Callable[[], None], at: int) -> int:
    """POST ``count`` articles from 8 threads; run ``fault`` once ``at`` have been sent.
    Returns how many POSTs were answered 201 (a killed worker may leave some unanswered)."""
    sent = 0
    lock = threading.Lock()
    faulted = threading.Event()
    assert api.auth  # sign in once, before the threads share it

    def post(i: int) -> bool:
        nonlocal sent
        with lock:
            sent += 1
            trigger = sent == at
        if trigger:
            fault()
            faulted.set()
        try:
            response = requests.post(
                f"{api.url}/articles",
                headers=api.auth,
                json={"title": f"a{i}", "body": "b"},
                timeout=15,
            )
        except requests.RequestException:
            return False
        return response.status_code == 201

    with ThreadPoolExecutor(max_workers=8) as pool:
        ok = sum(pool.map(post, range(count)))
    assert faulted.is_set()
    return ok


def check(stack: Stack, what: str, answered: int, sent: int = EVENTS) -> dict[str, int]:
    wait_until(lambda: stack.undelivered() == 0, 60, "the outbox drained", interval=0.2)
    committed = stack.committed()
    wait_until(
        lambda: stack.subscriber.last >= len(committed), 30, "subscriber caught up", interval=0.1
    )
    counts = stack.subscriber.counts()
    raw = stack.subscriber.raw
    jumps = [(raw[i - 1], raw[i]) for i in range(1, len(raw)) if raw[i] != raw[i - 1] + 1]
    print(f"\nout-of-order arrivals (prev, next): {jumps[:20]}")
    print(f"bridge stats: {stack.bridge.stats()}")
    delivered = stack.subscriber.delivered
    lost = sorted(set(committed) - set(delivered))
    print(
        f"\n{what}: sent={sent} answered_201={answered} committed={len(committed)} "
        f"delivered={len(set(delivered))} lost={len(lost)} "
        f"app_duplicates={len(delivered) - len(set(delivered))} "
        + " ".join(f"{k}={v}" for k, v in counts.items())
    )
    assert committed == list(range(1, len(committed) + 1)), "seq is dense per topic"
    assert len(committed) >= answered, "every answered POST committed its event"
    assert lost == []
    assert delivered == committed, "each committed event once, in commit order"
    return counts


def test_bridge_killed_and_restarted_mid_stream(stack):
    def crash_and_restart() -> None:
        stack.bridge.kill()
        threading.Timer(0.5, stack.bridge.start).start()

    answered = post_stream(stack.api, EVENTS, crash_and_restart, at=random.randint(300, 1200))
    counts = check(stack, "bridge SIGKILL", answered)
    assert counts["recovered_by_catch_up"] == 0, "the subscriber stayed: all came live"


def test_router_killed_and_restarted_mid_stream(stack):
    def crash_and_restart() -> None:
        os.killpg(stack.router.proc.pid, signal.SIGKILL)
        stack.router.proc.stop()
        threading.Timer(0.5, stack.router.start).start()

    answered = post_stream(stack.api, EVENTS, crash_and_restart, at=random.randint(300, 1200))
    check(stack, "router SIGKILL", answered)


def test_api_worker_killed_right_after_commits(stack):
    master = psutil.Process(stack.api.proc.pid)

    def kill_a_worker() -> None:
        workers = master.children()
        os.kill(random.choice(workers).pid, signal.SIGKILL)  # gunicorn starts a new one

    answered = post_stream(stack.api, EVENTS, kill_a_worker, at=random.randint(300, 1200))
    check(stack, "api worker SIGKILL", answered)


def test_subscriber_away_mid_stream_recovers_by_catch_up(stack, tmp_path):
    late = CatchUpSubscriber(stack.router.ws_url, "articles", stack.api.url)

    def leave() -> None:
        stack.subscriber.close()

    answered = post_stream(stack.api, EVENTS // 2, leave, at=200)
    late.start()  # a new page load: it starts from seq 0 and recovers everything
    try:
        stack.subscriber = late
        counts = check(stack, "subscriber away", answered, sent=EVENTS // 2)
        assert counts["recovered_by_catch_up"] > 0
    finally:
        late.close()


def test_catch_up_api_pages_and_refuses_what_the_topic_refuses(stack):
    for i in range(5):
        requests.post(
            f"{stack.api.url}/articles",
            headers=stack.api.auth,
            json={"title": f"t{i}", "body": "b"},
            timeout=5,
        )
    params: dict[str, str | int] = {"topic": "articles", "after": 2, "limit": 2}
    page = requests.get(f"{stack.api.url}/events", params=params, timeout=5).json()
    assert [e["seq"] for e in page["events"]] == [3, 4]
    assert page["more"] is True and page["truncated"] is False
    assert page["events"][0]["payload"]["title"] == "t2"
    private = requests.get(f"{stack.api.url}/events", params={"topic": "user.alice"}, timeout=5)
    assert private.status_code == 403
    assert (
        private.json()["error"]["message"]
        == "topic 'user.alice': sign in to receive private events"
    )
    unknown = requests.get(f"{stack.api.url}/events", params={"topic": "nope"}, timeout=5)
    assert unknown.status_code == 403


def test_live_events_carry_their_sequence_number(stack):
    requests.post(
        f"{stack.api.url}/articles",
        headers=stack.api.auth,
        json={"title": "x", "body": "b"},
        timeout=5,
    )
    [event] = stack.subscriber.wait_for(1, timeout=5)
    assert event.kwargs["seq"] == 1
    time.sleep(0.2)
    assert stack.undelivered() == 0


def test_delivered_events_are_pruned_and_catch_up_says_when_it_cannot_go_back(
    tmp_path, database_url
):
    router = Router(tmp_path).start()
    topics = Topics(tmp_path, router).start()
    bridge = Bridge(tmp_path, router).start()
    api = Api(
        tmp_path,
        bridge.endpoint,
        workers=1,
        database_url=database_url,
        outbox_retention_rows="3",
        outbox_prune_interval="0.2",
    ).start()
    try:
        for i in range(10):
            requests.post(
                f"{api.url}/articles",
                headers=api.auth,
                json={"title": f"t{i}", "body": "b"},
                timeout=5,
            )

        def kept() -> list[int]:
            return query(database_url, "SELECT seq FROM outbox ORDER BY seq")

        wait_until(lambda: kept() == [8, 9, 10], 10, "pruned to the last 3")
        page = requests.get(
            f"{api.url}/events", params={"topic": "articles", "after": "2"}, timeout=5
        ).json()
        assert page["truncated"] is True, "events 3..7 are gone: the client must reload"
        assert [e["seq"] for e in page["events"]] == [8, 9, 10]
        recent = requests.get(
            f"{api.url}/events", params={"topic": "articles", "after": "8"}, timeout=5
        ).json()
        assert recent["truncated"] is False
    finally:
        api.stop()
        bridge.stop()
        topics.stop()
        router.stop()
