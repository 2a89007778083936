"""docker-compose.yml, really run: build the image, start the stack on free ports, POST an
article to the published API and receive it over the published WebSocket, crash the bridge
and see Docker restart it and the next article arrive, replace the api container and find
the articles still there (the named volume). With Compose v2 and Debian's 1.29."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tests.support.compose import (
    SERVICES,
    Stack,
    base_image,
    compose_v1,
    compose_v2,
    containers_lock,
    engine_problem,
    trust_host_cas,
)
from tests.support.procs import ROOT, wait_until
from tests.support.wamp import Subscriber

# Backstop only: every docker/compose command has its own timeout. A cold run (base image,
# build) takes a few minutes; a warm one well under one.
pytestmark = pytest.mark.timeout(1500)

COMPOSE: dict[str, Callable[[], list[str]]] = {"v2": compose_v2, "v1": compose_v1}


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    """A running engine, the base image, and the test image built once with Compose v2;
    held by one test module at a time (they share the image tag), also across workers."""
    problem = engine_problem()
    if problem:
        if os.environ.get("SANDBAR_SKIP_DOCKER") == "1" and not os.environ.get("CI"):
            pytest.skip(f"SANDBAR_SKIP_DOCKER=1 and {problem}")
        pytest.fail(problem)
    with containers_lock():
        trust_host_cas()
        image = base_image()
        Stack(compose_v2(), image).build()
        yield image


@pytest.fixture(params=list(COMPOSE), ids=lambda name: f"compose-{name}")
def stack(request: pytest.FixtureRequest, base: str) -> Iterator[Stack]:
    stack = Stack(COMPOSE[request.param](), base)
    try:
        stack.up()
        print(stack("ps", timeout=30))
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.down()


def sign_in(stack: Stack) -> dict[str, str]:
    """An account made with the CLI inside the api container, signed in over HTTP."""
    password = "correct horse battery"
    stack(
        "exec",
        "-T",
        "api",
        "sh",
        "-c",
        f"echo '{password}' | sandbar-api users add tester --password-stdin",
        timeout=60,
    )
    response = requests.post(
        f"{stack.api_url}/auth/token", timeout=10, json={"username": "tester", "password": password}
    )
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['token']}"}


def post_article(stack: Stack, title: str, auth: dict[str, str]) -> dict[str, object]:
    response = requests.post(
        f"{stack.api_url}/articles",
        json={"title": title, "body": "from the host"},
        timeout=10,
        headers=auth,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_stack_delivers_and_restarts_a_crashed_bridge(stack: Stack) -> None:
    containers = stack.containers()
    assert set(containers) == set(SERVICES)
    for service, container in containers.items():
        assert container["Config"]["User"] == "sandbar", f"{service} runs as root"
        for bindings in (container["NetworkSettings"]["Ports"] or {}).values():
            for binding in bindings or []:
                assert binding["HostIp"] == "127.0.0.1", f"{service} published beyond loopback"

    subscriber = Subscriber(stack.ws_url, ["articles"]).start(timeout=30)
    try:
        auth = sign_in(stack)
        first = post_article(stack, "before the crash", auth)
        [event] = subscriber.wait_for(1, timeout=20)
        assert event.args == (first,)
        assert event.kwargs["name"] == "article.created"

        restarts = stack.restart_count("bridge")
        stack.crash("bridge")
        wait_until(
            lambda: (
                stack.restart_count("bridge") > restarts and stack.health()["bridge"] == "healthy"
            ),
            timeout=120,
            what="bridge restarted by Docker and healthy",
            interval=1,
        )

        second = post_article(stack, "after the crash", auth)
        events = subscriber.wait_for(2, timeout=30)
        assert [e.args for e in events] == [(first,), (second,)]
    finally:
        subscriber.close()

    page = requests.get(f"http://127.0.0.1:{stack.router_port}/", timeout=10)
    assert page.status_code == 200 and "autobahn" in page.text.lower(), "demo page served"

    old_api = stack.containers()["api"]["Id"]
    stack.recreate("api")
    assert stack.containers()["api"]["Id"] != old_api
    listed = requests.get(f"{stack.api_url}/articles", timeout=10).json()["articles"]
    assert [a["id"] for a in listed] == [second["id"], first["id"]], "the DB is on the volume"


# -- the observability profile: Prometheus scraping every service --------------------


@pytest.fixture
def observed(base: str) -> Iterator[Stack]:
    stack = Stack(compose_v2(), base, profiles="observability")
    try:
        stack("build", "prometheus", timeout=900)  # Debian's prometheus on the same base
        stack.up()
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.down()


def _query(stack: Stack, promql: str) -> list[dict[str, Any]]:
    response = requests.get(
        f"http://127.0.0.1:{stack.prometheus_port}/api/v1/query",
        params={"query": promql},
        timeout=10,
    )
    response.raise_for_status()
    return list(response.json()["data"]["result"])


def _committed(stack: Stack) -> float:
    result = _query(stack, "sum(sandbar_api_events_committed_total)")
    return float(result[0]["value"][1]) if result else 0.0


def test_prometheus_scrapes_every_service_and_counts_the_posted_events(observed: Stack) -> None:
    stack = observed
    assert stack.health()["prometheus"] == "healthy"
    auth = sign_in(stack)
    posted = 3
    for number in range(posted):
        post_article(stack, f"observed {number}", auth)
    wait_until(lambda: _committed(stack) == posted, 60, "Prometheus sees the committed events")
    up = {r["metric"]["job"]: r["value"][1] for r in _query(stack, "up")}
    assert up == {job: "1" for job in ("bridge", "topics", "api", "router", "prometheus")}, up
    publishes = "sum(sandbar_router_messages_received_total{type='publish'})"
    wait_until(
        lambda: sum(float(r["value"][1]) for r in _query(stack, publishes)) >= posted,
        30,
        "the router's publishes scraped",
    )
    # every query of the Grafana dashboard is PromQL this Prometheus accepts
    dashboard = json.loads((ROOT / "docker" / "grafana" / "sandbar.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            _query(stack, target["expr"].replace("$__rate_interval", "1m"))  # 400 if invalid
