"""Hostile input gets nowhere and breaks nothing: fuzzed envelopes, patterns, REST bodies,
random bytes on the bridge's socket, and random URIs from a browser. Each test prints how
many hostile inputs it tried, and ends by delivering a normal event end to end."""

from __future__ import annotations

import json
import os

import requests
from autobahn.wamp.exception import ApplicationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.envelope import Envelope, MalformedFrame
from tests.support.procs import dealer, wait_until
from topics.examples import topics as example_topics
from topics.patterns import TopicPattern

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def end_to_end(api, subscriber, title: str) -> None:
    response = requests.post(
        f"{api.url}/articles", json={"title": title, "body": "b"}, headers=api.auth, timeout=5
    )
    assert response.status_code == 201
    wait_until(
        lambda: any(e.args[0].get("title") == title for e in subscriber.snapshot()),
        10,
        f"'{title}' delivered",
    )


def test_envelope_parser_takes_any_bytes_and_any_json():
    tried = 0

    @FUZZ
    @given(st.binary(max_size=2000) | JSON.map(lambda v: json.dumps(v).encode()))
    def parse(frame: bytes) -> None:
        nonlocal tried
        tried += 1
        try:
            envelope = Envelope.from_bytes(frame, max_bytes=1000)
        except MalformedFrame as exc:
            assert exc.reason
        else:
            assert isinstance(envelope.payload, dict) and envelope.name

    parse()
    print(f"\nenvelope parser: {tried} hostile frames, none crashed it")


def test_topic_matcher_takes_any_uri():
    patterns = [topic.pattern for topic in example_topics] + [
        TopicPattern.compile("user.{id:int}.{box:[a-z]+}")
    ]
    tried = 0

    @FUZZ
    @given(st.text(max_size=300) | st.lists(st.text(max_size=20), max_size=6).map(".".join))
    def match(uri: str) -> None:
        nonlocal tried
        tried += 1
        for pattern in patterns:
            params = pattern.match(uri)
            if params is not None:
                assert pattern.build(**params) == uri

    match()
    print(f"\ntopic matcher: {tried} hostile URIs x {len(patterns)} patterns")


def test_rest_bodies_get_400_never_500(api, subscribe):
    subscriber = subscribe("articles")
    statuses: dict[int, int] = {}
    http = requests.Session()

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        JSON
        | st.dictionaries(st.sampled_from(["title", "body", "x"]), JSON, max_size=3)
        | st.fixed_dictionaries({"title": st.text(max_size=300), "body": st.text()})
    )
    def post(body: object) -> None:
        response = http.post(
            f"{api.url}/articles",
            data=json.dumps(body),
            timeout=5,
            headers={**api.auth, "Content-Type": "application/json"},
        )
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code in (201, 400), response.text
        assert "error" in response.json() or response.status_code == 201

    post()
    print(f"\nREST bodies: {sum(statuses.values())} tried, statuses {statuses}")
    end_to_end(api, subscriber, "after the REST fuzz")


def test_random_bytes_on_the_bridge_socket(api, bridge, subscribe):
    subscriber = subscribe("articles")
    sock = dealer(bridge.endpoint)  # an authenticated sender gone wrong
    frames = [os.urandom(n) for n in (0, 1, 7, 64, 4096, 70_000) for _ in range(50)]
    frames += [b'{"name": "article.created", "payload": {"title": ' + os.urandom(20) + b"}}"]
    frames += [
        json.dumps(
            {"name": "article.created", "payload": {}, "seq": "x", "topic": "articles", "ack": True}
        ).encode()
    ]
    for frame in frames:
        sock.send(frame)
    sock.close()
    before = bridge.stats()["received"]
    end_to_end(api, subscriber, "after random bytes")
    stats = bridge.stats()
    print(
        f"\nbridge socket: {len(frames)} random frames; malformed counted "
        f"{stats['malformed_total']}, by reason {stats['malformed']}"
    )
    assert stats["received"] == before + 1  # only the real event was taken
    assert bridge.proc.running()


def test_random_uris_and_actions_from_a_browser(client, api, subscribe):
    subscriber = subscribe("articles")
    browser = client()
    outcomes: dict[str, int] = {}

    @settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.sampled_from(["subscribe", "call", "publish"]),
        st.lists(
            st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-0123456789", min_size=1, max_size=12),
            min_size=1,
            max_size=4,
        ).map(".".join)
        | st.sampled_from(
            [
                "sandbar.authorize",
                "wamp.session.kill",
                "articles",
                "sandbar.auth.revoked",
                "user.alice",
                "wamp.registration.list",
            ]
        ),
    )
    def act(action: str, uri: str) -> None:
        try:
            if action == "subscribe":
                browser.subscribe(uri)
            elif action == "call":
                browser.call(uri, {"text": "hi"})
            else:
                browser.publish(uri, {"text": "hi"})
            outcome = "allowed"
        except ApplicationError as exc:
            outcome = exc.error
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if uri.split(".")[0] in ("sandbar", "wamp") or uri in ("articles", "user.alice"):
            assert (action == "subscribe" and uri == "articles") or outcome != "allowed", (
                action,
                uri,
            )

    act()
    print(f"\nbrowser actions: {sum(outcomes.values())} tried, outcomes {outcomes}")
    end_to_end(api, subscriber, "after the browser fuzz")
