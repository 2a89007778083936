"""docker-compose.yml with its `db` service (Debian's PostgreSQL) and two api replicas
(``--scale api=2``): both migrate at once and only one runs the migration, both serve, and
events posted through each arrive numbered in one sequence."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.support.compose import Stack, compose_v2, run
from tests.support.procs import free_ports
from tests.support.wamp import Subscriber
from tests.test_compose import base  # noqa: F401  (the image, built once)

pytestmark = pytest.mark.timeout(1500)


@pytest.fixture
def scaled(base: str) -> Iterator[Stack]:  # noqa: F811
    first = free_ports(2)  # the api replicas publish the range first-(first+1)
    stack = Stack(compose_v2(), base, api_port=first)
    env = stack.env
    stack.env = lambda: {**env(), "SANDBAR_API_PORT": f"{first}-{first + 1}"}  # type: ignore[method-assign]
    try:
        stack(
            "up",
            "--detach",
            "--no-build",
            "--wait",
            "--wait-timeout",
            "300",
            "--scale",
            "api=2",
            timeout=330,
        )
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.down()


def _api_ports(stack: Stack) -> list[int]:
    ids = stack("ps", "--quiet", "api", timeout=30).split()
    ports = []
    for container_id in ids:
        published = run(["docker", "port", container_id, "5000/tcp"], timeout=30)
        ports.append(int(published.strip().splitlines()[0].rsplit(":", 1)[1]))
    return sorted(ports)


def test_two_api_replicas_on_the_db_service(scaled: Stack) -> None:
    ports = _api_ports(scaled)
    assert len(ports) == 2
    migrations = scaled("logs", "--no-color", "api", timeout=60).count("Running upgrade  -> 0001")
    assert migrations == 1, "the two replicas migrated once between them"
    password = "correct horse battery"
    scaled(
        "exec", "-T", "--index", "1", "api", "sh", "-c",
        f"echo '{password}' | sandbar-api users add tester --password-stdin",
        timeout=60,
    )  # fmt: skip
    token = requests.post(
        f"http://127.0.0.1:{ports[1]}/auth/token",
        json={"username": "tester", "password": password},
        timeout=10,
    ).json()["token"]
    subscriber = Subscriber(scaled.ws_url, ["articles"]).start(timeout=30)
    try:
        for i, port in enumerate(ports * 2):
            response = requests.post(
                f"http://127.0.0.1:{port}/articles",
                json={"title": f"via {port} #{i}", "body": "b"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            assert response.status_code == 201, response.text
        events = subscriber.wait_for(4, timeout=30)
        assert [e.kwargs["seq"] for e in events] == [1, 2, 3, 4]
    finally:
        subscriber.close()
    for port in ports:  # one database behind both
        listed = requests.get(f"http://127.0.0.1:{port}/articles", timeout=10).json()["articles"]
        assert len(listed) == 4
