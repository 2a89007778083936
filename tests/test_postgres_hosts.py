"""PostgreSQL under the faults SQLite cannot have: two API hosts on one database (one of
them SIGKILLed mid-stream), and the database server restarting while the API writes."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.support.catchup import CatchUpSubscriber
from tests.support.postgres import PostgresServer
from tests.support.procs import Api, Bridge, Router, Topics
from tests.test_delivery import Stack, check, query


@dataclass
class Posted:
    """What the clients saw: each POST's status, and per answered title its time window."""

    statuses: Counter[int | str] = field(default_factory=Counter)
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)  # title: sent, answered
    slowest: float = 0.0

    @property
    def created(self) -> int:
        return self.statuses[201]


def post_articles(
    pick: Callable[[int], Api], count: int, fault: Callable[[], None], at: int, auth: dict[str, str]
) -> Posted:
    """POST ``count`` articles from 8 threads, each to ``pick(i)``; ``fault()`` once ``at``
    have been sent."""
    posted, lock, sent = Posted(), threading.Lock(), [0]

    def post(i: int) -> None:
        with lock:
            sent[0] += 1
            trigger = sent[0] == at
        if trigger:
            fault()
        title = f"a{i}"
        started = time.monotonic()
        try:
            response = requests.post(
                f"{pick(i).url}/articles",
                headers=auth,
                json={"title": title, "body": "b"},
                timeout=15,
            )
            status: int | str = response.status_code
            if status == 503:
                assert response.json()["error"]["code"] == "database_unavailable"
        except requests.RequestException as exc:  # a killed host answers nothing
            status = type(exc).__name__
        answered = time.monotonic()
        with lock:
            posted.statuses[status] += 1
            posted.slowest = max(posted.slowest, answered - started)
            if status == 201:
                posted.windows[title] = (started, answered)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(post, range(count)))
    return posted


def committed_titles(database_url: str) -> dict[str, int]:
    """title: seq of every article event the database holds."""
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT seq, payload FROM outbox WHERE topic = 'articles'"))
            return {json.loads(payload)["title"]: int(seq) for seq, payload in rows}
    finally:
        engine.dispose()


def assert_seq_in_commit_order(posted: Posted, seq_of: dict[str, int]) -> int:
    """A POST answered before another was sent committed first: its seq must be lower.
    Returns how many such ordered pairs the run had (the sweep checks all of them)."""
    by_sent = sorted(posted.windows.items(), key=lambda item: item[1][0])
    by_answered = sorted(posted.windows.items(), key=lambda item: item[1][1])
    highest_done, done, pairs = 0, 0, 0
    for title, (sent_at, _) in by_sent:
        while done < len(by_answered) and by_answered[done][1][1] < sent_at:
            highest_done = max(highest_done, seq_of[by_answered[done][0]])
            done += 1
        pairs += done
        assert highest_done < seq_of[title], f"{title} committed after a higher seq"
    return pairs


@contextlib.contextmanager
def running(tmp_path: Path) -> Iterator[tuple[Router, Topics, Bridge]]:
    with contextlib.ExitStack() as stack:
        router = stack.enter_context(Router(tmp_path).start())
        topics = stack.enter_context(Topics(tmp_path, router).start())
        bridge = stack.enter_context(Bridge(tmp_path, router).start())
        yield router, topics, bridge


EVENTS = 3000


def test_two_api_hosts_on_one_database_one_killed_mid_stream(tmp_path: Path, postgres_url: str):
    """Two gunicorn instances (own relays, as on two hosts) write the same topic at once;
    host B is SIGKILLed mid-stream and host A's relay resends what B left unacknowledged."""
    with running(tmp_path) as (router, topics, bridge), contextlib.ExitStack() as hosts:
        made = []
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            api = Api(
                tmp_path / name,
                bridge.endpoint,
                workers=1,
                database_url=postgres_url,
                outbox_lease_seconds="1",
            )
            made.append(hosts.enter_context(api.start()))
        host_a, host_b = made
        host_a.add_user("writer")
        auth = {"Authorization": f"Bearer {host_b.sign_in('writer')}"}  # valid on both
        subscriber = CatchUpSubscriber(router.ws_url, "articles", host_a.url)
        subscriber.start()
        hosts.callback(subscriber.close)
        b_down = threading.Event()

        def kill_b() -> None:
            """B dies with events committed and not acknowledged: the bridge is paused
            (SIGSTOP) for half a second first, so B's last events have no ack yet."""
            os.killpg(bridge.proc.pid, signal.SIGSTOP)
            time.sleep(0.5)
            os.killpg(host_b.proc.pid, signal.SIGKILL)  # master and worker: the host is gone
            b_down.set()
            os.killpg(bridge.proc.pid, signal.SIGCONT)

        def pick(i: int) -> Api:  # a load balancer: B's share goes to A once B is down
            return host_b if i % 2 and not b_down.is_set() else host_a

        posted = post_articles(pick, EVENTS, kill_b, random.randint(800, 2000), auth)
        stack = Stack(router, topics, bridge, host_a, subscriber)
        check(stack, "two hosts, B SIGKILL", posted.created, sent=EVENTS)
        seq_of = committed_titles(postgres_url)
        assert set(posted.windows) <= set(seq_of), "every 201 committed its event"
        pairs = assert_seq_in_commit_order(posted, seq_of)
        resent = query(postgres_url, "SELECT count(*) FROM outbox WHERE attempts > 1")[0]
        a_resends = [line for line in host_a.proc.output().splitlines() if "resending" in line]
        print(
            f"statuses={dict(posted.statuses)} ordered_pairs_checked={pairs} "
            f"rows_resent={resent} host_a_resend_lines={len(a_resends)}"
        )
        assert resent > 0 and a_resends, "host A resent what B left unacknowledged"


def test_database_restart_while_posting(tmp_path: Path):
    """The server stops (sessions ended) and starts again while 8 clients POST, and an API
    worker dies meanwhile: writes are answered 503 JSON, nothing answered 201 is lost,
    nothing is doubled, and the API recovers by itself."""
    server = PostgresServer()
    try:
        server.init().start()
        with running(tmp_path) as (router, topics, bridge):
            api = Api(
                tmp_path,
                bridge.endpoint,
                workers=2,
                database_url=server.url(),
                outbox_lease_seconds="1",
            )
            with api.start():
                auth = api.auth
                subscriber = CatchUpSubscriber(router.ws_url, "articles", api.url)
                subscriber.start()
                try:
                    outage: list[float] = []

                    def restart() -> None:
                        started = time.monotonic()
                        server.stop("fast")
                        # a worker dies meanwhile: its replacement boots during the outage
                        os.kill(psutil.Process(api.proc.pid).children()[0].pid, signal.SIGKILL)
                        time.sleep(2)
                        server.start()
                        outage.append(time.monotonic() - started)

                    def fault() -> None:
                        threading.Thread(target=restart).start()

                    posted = post_articles(lambda i: api, 2000, fault, 300, auth)
                    stack = Stack(router, topics, bridge, api, subscriber)
                    check(stack, "database restart", posted.created, sent=2000)
                    seq_of = committed_titles(server.url())
                    assert set(posted.windows) <= set(seq_of), "every 201 committed its event"
                    print(
                        f"statuses={dict(posted.statuses)} outage={outage[0]:.1f}s "
                        f"slowest_answer={posted.slowest:.2f}s committed={len(seq_of)}"
                    )
                    # requests the killed worker had taken get no answer, or half of one (it
                    # died mid-response): at most one per posting thread (its 4 request
                    # threads, plus connections it had accepted and not yet handed to one)
                    cut = {"ConnectionError", "ChunkedEncodingError"}
                    assert sum(posted.statuses[kind] for kind in cut) <= 8
                    others = set(posted.statuses) - {201, 503, *cut}
                    assert not others, "503 JSON, never a 500"
                    assert posted.statuses[503] > 0, "the outage was seen"
                    assert posted.slowest < 10, "no request hung"
                    after = requests.post(
                        f"{api.url}/articles",
                        headers=auth,
                        json={"title": "z", "body": "b"},
                        timeout=10,
                    )
                    assert after.status_code == 201, "recovered by itself"
                    assert api.proc.running(), "the server outlived the outage"
                finally:
                    subscriber.close()
    finally:
        server.remove()


pytestmark = pytest.mark.timeout(300)
