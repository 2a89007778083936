"""One trace per event, end to end, and logs that join up, on the real stack.

A POST with a ``traceparent`` header: the same trace id in a real AutobahnPython
subscriber's kwargs (``trace``), in the catch-up rows, and in the spans each service's
OpenTelemetry SDK exports to a real OTLP/HTTP receiver served by the test. And with
``SANDBAR_LOG_FORMAT=json``: one event id followed through api, bridge and topics logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbar import tracing
from tests.support.otlp import Receiver, Span
from tests.support.procs import Api, Bridge, Proc, Router, Topics, free_port, wait_until
from tests.support.wamp import Client, Subscriber

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"
TRACEPARENT_RE = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def _with_env(proc: Proc, **env: str) -> None:
    proc.env.update(env)


@contextlib.contextmanager
def _stack(workdir: Path, **env: str) -> Iterator[tuple[Router, Topics, Bridge, Api]]:
    """Router, topics, bridge and API, the services started with ``env`` added."""
    api_port = free_port()
    with contextlib.ExitStack() as started:
        router = Router(workdir).start()
        started.callback(router.stop)
        topics = Topics(workdir, router, api_url=f"http://127.0.0.1:{api_port}")
        _with_env(topics.proc, **env)
        started.callback(topics.start().stop)
        bridge = Bridge(workdir, router)
        _with_env(bridge.proc, **env)
        started.callback(bridge.start().stop)
        api = Api(workdir, bridge.endpoint, port=api_port)
        _with_env(api.proc, **env)
        started.callback(api.start().stop)
        yield router, topics, bridge, api


def _post(api: Api, headers: dict[str, str] | None = None) -> requests.Response:
    response = requests.post(
        f"{api.url}/articles",
        headers={**api.auth, **(headers or {})},
        json={"title": "traced", "body": "b"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return response


def _caught_up(api: Api, event_id: str) -> dict[str, Any]:
    page = requests.get(f"{api.url}/events?topic=articles&after=0", timeout=5)
    assert page.status_code == 200, page.text
    [row] = [e for e in page.json()["events"] if e["id"] == event_id]
    return dict(row)


# -- tracing off (the default): the traceparent still travels --------------------------


def test_tracing_off_carries_the_client_traceparent_or_a_minted_one(api, subscribe):
    assert not tracing.enabled(os.environ), "these fixtures' services run with tracing off"
    subscriber = subscribe("articles")
    _post(api, {"traceparent": TRACEPARENT})
    _post(api)  # no header: the API starts a trace
    _post(api, {"traceparent": "00-not-a-trace-01"})  # invalid: ignored, a new trace
    continued, minted, replaced = (e.kwargs for e in subscriber.wait_for(3, timeout=10))

    assert continued["trace"] == TRACEPARENT  # no span of the API's own in between
    assert _caught_up(api, continued["id"])["trace"] == TRACEPARENT
    for started in (minted, replaced):
        assert TRACEPARENT_RE.fullmatch(started["trace"])
        assert TRACE_ID not in started["trace"]
        assert _caught_up(api, started["id"])["trace"] == started["trace"]
    assert minted["trace"] != replaced["trace"]


# -- tracing on: spans exported over OTLP ---------------------------------------------------


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Receiver, Router, Api]]:
    with Receiver() as otlp, _stack(tmp_path_factory.mktemp("traced"), **otlp.env()) as parts:
        router, _, _, api = parts
        yield otlp, router, api


def _one(spans: list[Span], name: str) -> Span:
    named = [s for s in spans if s.name == name]
    assert len(named) == 1, f"{name}: {named} among {[s.name for s in spans]}"
    return named[0]


def test_one_trace_from_the_request_to_the_subscriber(traced):
    otlp, router, api = traced
    subscriber = Subscriber(router.ws_url, ["articles"]).start()
    try:
        response = _post(api, {"traceparent": TRACEPARENT})
        [event] = subscriber.wait_for(1, timeout=10)
    finally:
        subscriber.close()
    trace = event.kwargs["trace"]
    assert tracing.trace_id(trace) == TRACE_ID, "the subscriber's kwargs carry the trace"
    assert _caught_up(api, event.kwargs["id"])["trace"] == trace, "so do the catch-up rows"

    for name in ("POST /articles", "commit", "publish articles"):  # two services' batches:
        otlp.wait_for(name, lambda s, name=name: s.name == name and s.trace_id == TRACE_ID)
    spans = otlp.of_trace(TRACE_ID)
    request, commit = _one(spans, "POST /articles"), _one(spans, "commit")
    publish = _one(spans, "publish articles")
    assert (request.service, request.kind) == ("sandbar-api", "SERVER")
    assert request.parent_id == CLIENT_SPAN, "the API continued the client's trace"
    assert request.attributes["http.route"] == "/articles"
    assert request.attributes["http.response.status_code"] == response.status_code
    assert (commit.service, commit.kind, commit.parent_id) == (
        "sandbar-api",
        "INTERNAL",
        request.span_id,
    )
    assert trace == f"00-{TRACE_ID}-{commit.span_id}-01", "the event was created in the commit"

    assert (publish.service, publish.kind) == ("sandbar-bridge", "PRODUCER")
    assert publish.links == ((TRACE_ID, commit.span_id),), "linked to the creating context"
    assert publish.parent_id == commit.span_id
    assert publish.attributes["messaging.system"] == "wamp"
    assert publish.attributes["messaging.operation.type"] == "send"
    assert publish.attributes["messaging.destination.name"] == "articles"
    assert publish.attributes["messaging.message.id"] == event.kwargs["id"]
    assert not publish.error

    authorize = otlp.wait_for(
        "authorize",
        lambda s: s.name == "authorize" and s.attributes.get("sandbar.topic") == "articles",
    )
    assert (authorize.service, authorize.kind) == ("sandbar-topics", "SERVER")
    assert authorize.attributes["sandbar.action"] == "subscribe"
    assert authorize.attributes["sandbar.allow"] is True


def test_a_handled_publish_is_an_on_publish_span_its_event_carries(traced):
    otlp, router, _ = traced
    browser = Client(router.ws_url)
    try:
        browser.subscribe("chat.traced")
        browser.call("chat.traced", {"text": "hi"})
        [message] = browser.wait_for(1, name="chat.message", timeout=10)
    finally:
        browser.close()
    trace = message.kwargs["trace"]
    span = otlp.wait_for(
        "on_publish", lambda s: s.name == "on_publish" and s.trace_id == tracing.trace_id(trace)
    )
    assert (span.service, span.kind) == ("sandbar-topics", "SERVER")
    assert span.attributes["messaging.destination.name"] == "chat.traced"
    assert trace.startswith(f"00-{span.trace_id}-{span.span_id}-")  # flags: sampled (+random)


# -- logs that join up ----------------------------------------------------------------------


def _logged(proc: Proc, *parts: str) -> bool:
    """Whether one line the service wrote holds all of ``parts``."""
    return any(all(p in line for p in parts) for line in proc.output().splitlines())


def _json_lines(proc: Proc) -> list[dict[str, Any]]:
    """Every line the service wrote, each of which must be one JSON object."""
    lines = []
    for line in proc.output().splitlines():
        document = json.loads(line)  # fails the test on a line that is not JSON
        assert isinstance(document, dict), line
        lines.append(document)
    return lines


def test_json_logs_follow_one_event_through_api_bridge_and_topics(tmp_path):
    env = {"SANDBAR_LOG_FORMAT": "json", "SANDBAR_LOG_LEVEL": "DEBUG"}
    with _stack(tmp_path, **env) as (_, topics, bridge, api):
        api.add_user("alice")
        token = api.sign_in("alice")
        signed_out = requests.post(
            f"{api.url}/auth/logout", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert signed_out.status_code == 204, signed_out.text
        wait_until(lambda: "ended 0 sessions of alice" in topics.proc.output(), 10, "topics acted")
        # the API and the bridge log after they hand the event on: topics may act first
        wait_until(lambda: _logged(api.proc, "committed event", "'auth.revoked'"), 10, "API")
        wait_until(lambda: "published event" in bridge.proc.output(), 10, "the bridge logged it")
        # gunicorn writes the access line once the response is sent: after the client has it
        wait_until(lambda: _logged(api.proc, "POST /auth/logout"), 10, "the API's access line")
        logs = {
            name: _json_lines(proc)
            for name, proc in (("api", api.proc), ("bridge", bridge.proc), ("topics", topics.proc))
        }

    for service, lines in logs.items():
        assert lines and {line["service"] for line in lines} == {service}
        assert all({"ts", "level", "logger", "message"} <= line.keys() for line in lines)
    [committed] = [
        line
        for line in logs["api"]
        if "'auth.revoked'" in line["message"] and "committed" in line["message"]
    ]
    event_id, trace_id = committed["event_id"], committed["trace_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id), "minted: the request had no traceparent"
    followed = {
        service: [line["message"] for line in lines if line.get("event_id") == event_id]
        for service, lines in logs.items()
    }
    assert any(m.startswith("published event") for m in followed["bridge"]), followed
    assert followed["topics"] == ["ended 0 sessions of alice"], followed
    for service, lines in logs.items():  # one grep on the trace id finds the same lines, and more
        traced = [line for line in lines if line.get("trace_id") == trace_id]
        assert all(
            line["trace_id"] == trace_id for line in traced if line.get("event_id") == event_id
        )
        assert traced, f"{service}: nothing with trace {trace_id}"
    access = [line for line in logs["api"] if line["logger"] == "gunicorn.access"]
    [logout] = [line for line in access if "POST /auth/logout" in line["message"]]
    assert logout["trace_id"] == trace_id, "the access line joins up too"
