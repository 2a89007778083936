"""``inspect.why_not`` and ``inspect.decisions`` on the real stack: router, two topics
replicas, the bridge and the API (for staff and user tokens), real AutobahnPython
clients. The four prepared cases of issue 19 (delivered, refused, not subscribed,
excluded by addressing), plus not connected, not published, the decision log and the
replicas sharing it. The answers are printed (``-s``) for the closing note."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from autobahn.wamp.exception import ApplicationError

from bridge import EventSender
from tests.support.events import article
from tests.support.procs import (
    SHIPPED_BRIDGE_CONFIG,
    Api,
    Bridge,
    Router,
    Topics,
    free_port,
    wait_until,
)
from tests.support.wamp import Client

APP = "tests.topics_app:topics"
INVALID = "sandbar.error.invalid_argument"
#: beside the shipped routes: addressed articles, and notes to lobbies (closed-* refuse all)
ROUTES = {
    "article.except": {"topic": "articles", "exclude_authids": "except"},
    "article.for": {"topic": "articles", "to_authids": "to"},
    "lobby.note": {"topic": "lobby.{room}"},
}


@dataclass
class Stack:
    router: Router
    replicas: list[Topics]
    bridge: Bridge
    api: Api
    made: list[Client] = field(default_factory=list)

    def user(self, name: str, role: str = "user") -> Client:
        with contextlib.suppress(Exception):  # made once; later calls only sign in
            self.api.add_user(name, role=role)
        client = Client(self.router.ws_url, authid=name, ticket=self.api.sign_in(name))
        self.made.append(client)
        return client

    def leader(self) -> Topics:
        wait_until(
            lambda: any("(leader)" in r.proc.output() for r in self.replicas), 10, "a leader"
        )
        return next(r for r in self.replicas if "(leader)" in r.proc.output())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("why")
    api_port = free_port()
    config = yaml.safe_load(SHIPPED_BRIDGE_CONFIG.read_text())
    config["routes"].update(ROUTES)
    with contextlib.ExitStack() as running:
        router = running.enter_context(Router(workdir).start())
        api_url = f"http://127.0.0.1:{api_port}"
        replicas = [
            running.enter_context(Topics(workdir, router, APP, f"topics-{n}", api_url).start())
            for n in (1, 2)
        ]
        bridge = running.enter_context(
            Bridge(workdir, router, config=config, topics_app=APP).start()
        )
        api = running.enter_context(Api(workdir, bridge.endpoint, port=api_port).start())
        built = Stack(router, replicas, bridge, api)
        yield built
        for client in built.made:
            client.close()


@pytest.fixture(scope="module")
def staff(stack: Stack) -> Client:
    return stack.user("ann", role="staff")


@pytest.fixture(scope="module")
def sender(stack: Stack) -> Iterator[EventSender]:
    events = EventSender(stack.bridge.endpoint)
    yield events
    events.close()


def ask(client: Client, procedure: str, **kwargs: Any) -> Any:
    return client._thread.call(client.session.call, procedure, **kwargs)


def connected_in_journal(staff: Client, client: Client, authid: str) -> None:
    """Wait until the journal has heard the router's join of ``client``."""

    def heard() -> bool:
        sessions = ask(staff, "inspect.why_not", authid=authid, event="probe")["sessions"]
        return any(s["session"] == client.id and s["until"] is None for s in sessions)

    wait_until(heard, 5, f"the journal saw {authid} join", interval=0.05)


def subscribed_in_journal(staff: Client, authid: str, uri: str) -> None:
    """Wait until the journal has heard the router's meta event for this subscription
    (it travels beside the publish, on another path): an unknown event id answers with
    the user's sessions and their subscriptions."""

    def heard() -> bool:
        sessions = ask(staff, "inspect.why_not", authid=authid, event="probe")["sessions"]
        return any(
            s["uri"] == uri and s["until"] is None for x in sessions for s in x["subscriptions"]
        )

    wait_until(heard, 5, f"the journal saw {authid} subscribe to {uri}", interval=0.05)


def why_not(staff: Client, verdict: str, **kwargs: Any) -> dict[str, Any]:
    """The answer, once the records have arrived (the bridge's after its ack, a decision
    of the other replica after its batch); printed for the closing note."""
    answers: list[dict[str, Any]] = []

    def answered() -> bool:
        answers.append(ask(staff, "inspect.why_not", **kwargs))
        return answers[-1]["verdict"] == verdict

    try:
        wait_until(answered, 5, f"verdict {verdict}", interval=0.1)
    finally:
        shown = {k: answers[-1][k] for k in ("verdict", "steps")} if answers else None
        print(f"\nwhy_not({kwargs}) ->\n{json.dumps(shown, indent=1)}")
    return answers[-1]


def steps(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["check"]: step for step in answer["steps"]}


def test_a_delivered(stack, staff, sender):
    bob = stack.user("bob")
    bob.subscribe("articles")
    subscribed_in_journal(staff, "bob", "articles")
    event = sender.send("article.created", article("for everyone"))
    [got] = [e for e in bob.wait_for(1) if e.kwargs.get("id") == event.id]
    assert got.args[0]["title"] == "for everyone"

    answer = why_not(staff, "delivered", authid="bob", event=event.id)
    checks = steps(answer)
    assert [s["check"] for s in answer["steps"]] == [
        "published",
        "connected",
        "subscribed",
        "refused",
        "addressing",
    ]
    assert all(s["ok"] is True for s in answer["steps"])
    assert answer["event"]["id"] == event.id and answer["event"]["topic"] == "articles"
    assert f"session {bob.id}" in checks["connected"]["detail"]
    assert "subscribed to 'articles' (exact)" in checks["subscribed"]["detail"]
    assert checks["published"]["at"] >= checks["subscribed"]["at"]
    assert "no addressing" in checks["addressing"]["detail"]
    assert bob.id in [s["session"] for s in answer["sessions"]]

    # The real path: the API commits the article, its outbox numbers it, the bridge sends it.
    posted = requests.post(
        f"{stack.api.url}/articles",
        headers=stack.api.auth,
        json={"title": "through the outbox", "body": "b"},
        timeout=10,
    )
    assert posted.status_code == 201, posted.text
    [got] = [e for e in bob.wait_for(2) if e.args[0].get("title") == "through the outbox"]
    answer = why_not(staff, "delivered", authid="bob", event=got.kwargs["id"])
    assert answer["event"]["seq"] == got.kwargs["seq"] is not None
    assert f"seq {got.kwargs['seq']}" in steps(answer)["published"]["detail"]
    assert f"a gap before seq {got.kwargs['seq']}" in steps(answer)["addressing"]["detail"]


def test_b_refused_with_the_reason(stack, staff, sender):
    carl = stack.user("carl")
    connected_in_journal(staff, carl, "carl")
    with pytest.raises(ApplicationError):
        carl.subscribe("lobby.closed-b")
    event = sender.send("lobby.note", {"room": "closed-b", "text": "nobody hears this"})

    answer = why_not(staff, "refused", authid="carl", event=event.id)
    checks = steps(answer)
    assert checks["connected"]["ok"] is True
    assert checks["subscribed"]["ok"] is False
    assert checks["refused"]["ok"] is False
    assert "subscribing to 'lobby.closed-b' was refused" in checks["refused"]["detail"]
    assert checks["refused"]["detail"].endswith("this lobby is closed")
    assert checks["refused"]["at"] <= checks["published"]["at"]


def test_c_not_subscribed_at_the_time(stack, staff, sender):
    dora = stack.user("dora")
    connected_in_journal(staff, dora, "dora")
    event = sender.send("chat.announcement", {"channel": "why-c", "text": "too early"})
    wait_until(
        lambda: ask(staff, "inspect.why_not", authid="dora", event=event.id)["event"],
        5,
        "the bridge's record of the announcement",
    )
    dora.subscribe("chat.why-c")
    subscribed_in_journal(staff, "dora", "chat.why-c")

    answer = why_not(staff, "not_subscribed", authid="dora", event=event.id)
    checks = steps(answer)
    assert checks["connected"]["ok"] is True
    assert checks["subscribed"]["ok"] is False
    assert "subscribed to 'chat.why-c' (exact) at" in checks["subscribed"]["detail"]
    assert "after the publish" in checks["subscribed"]["detail"]
    assert checks["subscribed"]["at"] > checks["published"]["at"]
    assert checks["refused"]["ok"] is True


def test_d_excluded_by_addressing(stack, staff, sender):
    erin = stack.user("erin")
    erin.subscribe("articles")
    subscribed_in_journal(staff, "erin", "articles")
    left_out = sender.send("article.except", {**article("not for erin"), "except": "erin"})
    elsewhere = sender.send("article.for", {**article("for frank only"), "to": "frank"})
    last = sender.send("article.created", article("after both"))
    wait_until(lambda: any(e.kwargs.get("id") == last.id for e in erin.events), 5, "the last")
    assert {e.kwargs.get("id") for e in erin.events}.isdisjoint({left_out.id, elsewhere.id})

    answer = why_not(staff, "excluded", authid="erin", event=left_out.id)
    checks = steps(answer)
    assert checks["subscribed"]["ok"] is True
    assert checks["addressing"]["ok"] is False
    assert (
        "exclude_authids (exclude_authid) ['erin'] lists 'erin'" in checks["addressing"]["detail"]
    )
    assert answer["event"]["exclude_authid"] == ["erin"]

    answer = why_not(staff, "excluded", authid="erin", event=elsewhere.id)
    detail = steps(answer)["addressing"]["detail"]
    assert "to_authids (eligible_authid) is ['frank'], without 'erin'" in detail


def test_not_connected_then(stack, staff, sender):
    gus = stack.user("gus")
    gone = gus.id
    gus.close()
    wait_until(
        lambda: all(
            s["until"]
            for s in ask(staff, "inspect.why_not", authid="gus", event="probe")["sessions"]
        ),
        5,
        "gus's leave heard",
    )
    event = sender.send("article.created", article("gus is away"))
    answer = why_not(staff, "not_connected", authid="gus", event=event.id)
    detail = steps(answer)["connected"]["detail"]
    assert steps(answer)["connected"]["ok"] is False
    assert "no session of user 'gus' was connected" in detail
    assert f"(in the records: session {gone} from" in detail


def test_not_published_says_where_to_look(staff):
    unknown = "0" * 32
    answer = why_not(staff, "not_published", authid="bob", event=unknown)
    [step] = answer["steps"]
    assert step["check"] == "published" and step["ok"] is False
    assert "holds the last 10000 events it published" in step["detail"]
    assert f"GET /inspect/api/events/{unknown}" in step["detail"]
    answer = why_not(staff, "not_published", session=1, topic="articles.never")
    assert "no record of an event on 'articles.never'" in answer["steps"][0]["detail"]


def test_by_topic_and_by_session(stack, staff, sender):
    hal = stack.user("hal")
    hal.subscribe("chat.why-t")
    subscribed_in_journal(staff, "hal", "chat.why-t")
    sender.send("chat.announcement", {"channel": "why-t", "text": "newest"})
    answer = why_not(staff, "delivered", session=hal.id, topic="chat.why-t")
    assert answer["event"]["topic"] == "chat.why-t" and answer["event"]["seq"] is None


def test_decisions_newest_first_with_reasons(stack, staff):
    ivy = stack.user("ivy")
    ivy.subscribe("chat.why-ivy")
    with pytest.raises(ApplicationError):
        ivy.subscribe("lobby.closed-ivy")

    def logged() -> list[dict[str, Any]]:
        return list(ask(staff, "inspect.decisions", authid="ivy"))

    wait_until(lambda: len(logged()) >= 2, 5, "both decisions in the log")
    decisions = logged()
    assert [d["at"] for d in decisions] == sorted((d["at"] for d in decisions), reverse=True)
    refused, allowed = decisions[0], decisions[1]
    assert (refused["uri"], refused["allow"], refused["reason"]) == (
        "lobby.closed-ivy",
        False,
        "this lobby is closed",
    )
    assert (allowed["uri"], allowed["allow"], allowed["action"]) == (
        "chat.why-ivy",
        True,
        "subscribe",
    )
    assert refused["session"] == ivy.id and refused["authid"] == "ivy"
    only = ask(staff, "inspect.decisions", session=ivy.id, topic="chat.why-ivy", limit=1)
    assert [d["uri"] for d in only] == ["chat.why-ivy"]


def test_a_refusal_by_the_other_replica_is_in_the_leaders_log(stack, staff):
    leader = stack.leader()
    other = next(r for r in stack.replicas if r is not leader)
    names = {f"{socket.gethostname()}:{r.proc.pid}": r.proc.name for r in stack.replicas}
    jo = stack.user("jo")
    for n in range(4):  # round-robin: consecutive decisions go to both replicas
        with pytest.raises(ApplicationError):
            jo.subscribe(f"lobby.closed-jo{n}")

    def replicas() -> set[str]:
        found = ask(staff, "inspect.decisions", authid="jo", topic=None, limit=100)
        return {d["replica"] for d in found if not d["allow"]}

    wait_until(lambda: len(replicas()) == 2, 5, "refusals of both replicas in the log")
    print(f"\nrefusals of jo in the leader's log came from: {sorted(names[r] for r in replicas())}")
    assert {names[r] for r in replicas()} == {leader.proc.name, other.proc.name}


@pytest.mark.parametrize(
    ("procedure", "kwargs", "says"),
    [
        ("inspect.why_not", {}, "exactly one of 'authid'"),
        ("inspect.why_not", {"authid": "bob"}, "exactly one of 'event'"),
        ("inspect.why_not", {"authid": "bob", "session": 5, "event": "x"}, "exactly one"),
        ("inspect.why_not", {"authid": "", "event": "x"}, "'authid' must be a string"),
        ("inspect.why_not", {"session": True, "event": "x"}, "'session' must be a positive"),
        ("inspect.why_not", {"authid": "bob", "event": "x" * 129}, "'event' must be a string"),
        ("inspect.why_not", {"authid": "bob", "topic": 7}, "'topic' must be a string"),
        ("inspect.why_not", {"authid": "bob", "event": "x", "who": 1}, "not ['who']"),
        ("inspect.decisions", {"limit": 0}, "'limit' must be an integer from 1 to 1000"),
        ("inspect.decisions", {"limit": "all"}, "'limit' must be an integer"),
        ("inspect.decisions", {"topic": "t" * 600}, "'topic' must be a string of 1-512"),
    ],
)
def test_bad_arguments_are_refused_with_a_reason(staff, procedure, kwargs, says):
    with pytest.raises(ApplicationError) as refused:
        ask(staff, procedure, **kwargs)
    assert refused.value.error == INVALID
    assert says in str(refused.value.args[0])


def test_only_staff_may_ask(stack):
    kim = stack.user("kim")
    for procedure in ("inspect.why_not", "inspect.decisions"):
        with pytest.raises(ApplicationError) as refused:
            ask(kim, procedure, authid="kim", event="x")
        assert refused.value.error in (
            "wamp.error.not_authorized",
            "wamp.error.authorization_failed",
        )


def test_last_the_survivor_answers_and_a_late_replica_says_when_its_records_begin(
    stack, staff, sender, tmp_path
):
    """Runs last: it stops both first replicas. The survivor of a stopped leader still
    has the refusals the other decided; a replica started later learns who is already
    connected and subscribed (since unknown) and says it has no records before its start."""
    mo = stack.user("mo")
    connected_in_journal(staff, mo, "mo")
    for n in range(4):  # round-robin: both replicas refuse some
        with pytest.raises(ApplicationError):
            mo.subscribe(f"lobby.closed-mo{n}")
    note = sender.send("lobby.note", {"room": "closed-mo0", "text": "before the late one"})
    why_not(staff, "refused", authid="mo", event=note.id)

    def replicas() -> int:
        return len({d["replica"] for d in ask(staff, "inspect.decisions", authid="mo")})

    wait_until(lambda: replicas() == 2, 5, "refusals of both replicas")
    leader = stack.leader()
    survivor = next(r for r in stack.replicas if r is not leader)
    leader.stop()
    wait_until(lambda: "(leader)" in survivor.proc.output(), 15, "the survivor leads")
    assert replicas() == 2, "the stopped replica's decisions, answered by the survivor"
    why_not(staff, "refused", authid="mo", event=note.id)
    bob = stack.user("bob")
    bob.subscribe("articles")
    subscribed_in_journal(staff, "bob", "articles")

    late = Topics(tmp_path, stack.router, APP, "topics-late", stack.api.url).start()
    stack.replicas.append(late)
    try:
        wait_until(lambda: "journal: learnt" in late.proc.output(), 10, "learnt who is there")
        survivor.stop()
        wait_until(lambda: "(leader)" in late.proc.output(), 15, "the late replica leads")
        answer = why_not(staff, "unknown", authid="mo", event=note.id)
        assert "no records before" in steps(answer)["connected"]["detail"]
        event = sender.send("article.created", article("for the late replica"))
        answer = why_not(staff, "delivered", authid="bob", event=event.id)
        assert "before records began" in steps(answer)["subscribed"]["detail"]
    finally:
        late.stop()
