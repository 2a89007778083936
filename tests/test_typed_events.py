"""Typed events: a schema is checked when declared; a payload that does not fit is refused
by the API before commit (500, logged, counted, nothing delivered) and by the bridge for
any other sender (nack, counted by reason and event); good events still flow."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import requests
import yaml
import zmq
from pydantic import BaseModel
from sqlalchemy import create_engine, text

from api.app import create_app
from api.config import ApiConfig
from bridge.envelope import Ack
from sandbar.config import ConfigError
from sandbar.events import Namespace
from sandbar.schemas import EventSchemas, PayloadMismatch, SchemaError
from tests.support.events import article
from tests.support.procs import (
    BIN,
    ROOT,
    SHIPPED_BRIDGE_CONFIG,
    TOKEN_SECRET,
    Api,
    Bridge,
    base_env,
    dealer,
    free_port,
    wait_until,
)
from tests.test_metrics import scrape, value
from topics.registry import TopicRouter
from topics.testing import Refused, TopicTester

# -- declaration --------------------------------------------------------------------


def test_a_bad_json_schema_is_refused_where_it_is_declared():
    events = Namespace()
    with pytest.raises(SchemaError) as refused:
        events.signal("comment.added", schema={"type": "object", "properties": {"n": {"type": 5}}})
    message = str(refused.value)
    assert "event 'comment.added': schema is not a valid JSON Schema" in message
    assert "properties.n.type" in message
    assert "comment.added" not in events.schemas


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        (int, "must be a pydantic model class or a JSON Schema dict, not type"),
        ("Article", "not str"),
        ({"type": "array"}, "must describe an object"),
    ],
)
def test_what_is_not_a_schema_is_named(schema, says):
    with pytest.raises(SchemaError, match=says):
        EventSchemas().declare("comment.added", schema)


def test_one_event_name_cannot_have_two_schemas():
    class A(BaseModel):
        a: int

    class B(BaseModel):
        b: int

    topics = TopicRouter()
    topics.add_topic("one", events={"thing.done": A})
    with pytest.raises(SchemaError, match=r"'thing\.done' is declared with two different schemas"):
        topics.add_topic("two", events={"thing.done": B})
    topics.add_topic("three", events={"thing.done": A})  # the same one again is fine


def test_a_mismatch_names_the_field_and_the_reason():
    schemas = EventSchemas()
    schemas.declare(
        "user.notified",
        {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}}},
    )
    with pytest.raises(PayloadMismatch) as refused:
        schemas.check("user.notified", {"tags": ["a", 2]})
    assert refused.value.path == "tags[1]"
    assert "2 is not of type 'string'" in str(refused.value)
    schemas.check("not.typed", {"anything": object()})  # no schema: nothing checked


def test_topic_code_sending_a_misfit_is_an_internal_error():
    class Echo(BaseModel):
        text: str

    topics = TopicRouter()

    @topics.topic("echo", events={"echo.said": Echo})
    class EchoTopic:
        event_name = "echo.said"

        def on_publish(self, session, payload):
            return {"txt": payload}  # the bug: a misspelt field

    with TopicTester(topics) as tester, pytest.raises(Refused) as refused:
        tester.client().call("echo", "hi")
    assert refused.value.error == "sandbar.error.internal"


def _shipped_without(tmp_path: Path, **changes: object) -> Path:
    config = {**yaml.safe_load(SHIPPED_BRIDGE_CONFIG.read_text()), **changes}
    config = {k: v for k, v in config.items() if v is not None}
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_api_refuses_to_start_when_the_bridge_would_not_check_its_schemas(tmp_path):
    config = ApiConfig(
        database_url=f"sqlite:///{tmp_path / 'api.db'}",
        routes_config=_shipped_without(tmp_path, schemas=None),
        delivery="fire_and_forget",
        token_secret=TOKEN_SECRET,
    )
    with pytest.raises(ConfigError) as refused:
        create_app(config)
    assert "event 'article.created' has a payload schema" in str(refused.value)
    assert "e.g. 'schemas: [api.signals:events]'" in str(refused.value)


def test_the_bridge_refuses_a_schemas_entry_that_is_no_namespace(tmp_path):
    path = _shipped_without(tmp_path, schemas=["api.signals:Article"])
    result = subprocess.run(
        [str(BIN / "sandbar-bridge"), "--check", str(path)],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "schemas: 'api.signals:Article' is a ModelMetaclass, not a sandbar.events.Namespace" in (
        result.stderr
    )


# -- the REST path ------------------------------------------------------------------


@pytest.fixture
def buggy_api(bridge: Bridge, tmp_path: Path):
    api = Api(
        tmp_path,
        bridge.endpoint,
        app="tests.typed_app:create_app",
        metrics_port=str(free_port()),
    )
    api.proc.env["PYTHONPATH"] = str(ROOT)
    with api.start():
        yield api


def test_an_endpoint_emitting_a_misfit_fails_and_commits_nothing(buggy_api, bridge, subscribe):
    subscriber = subscribe("articles")
    response = requests.post(f"{buggy_api.url}/buggy-articles", timeout=10)
    assert response.status_code == 500
    assert "event 'article.created' does not fit its schema" in response.json()["error"]["message"]
    log = buggy_api.proc.output()
    assert "POST /buggy-articles: event refused, nothing committed" in log
    assert "event 'article.created': field 'body' does not fit its schema: Field required" in log
    url = f"http://127.0.0.1:{buggy_api.proc.env['SANDBAR_API_METRICS_PORT']}/metrics"
    refused = "sandbar_api_events_schema_refused_total"
    wait_until(lambda: value(scrape(url), refused, event="article.created") == 1, 5, "counted")
    engine = create_engine(buggy_api.database_url)
    with engine.connect() as conn:  # the article and its event rolled back together
        assert conn.execute(text("SELECT count(*) FROM articles")).scalar_one() == 0
        assert conn.execute(text("SELECT count(*) FROM outbox")).scalar_one() == 0
    engine.dispose()

    good = requests.post(
        f"{buggy_api.url}/articles",
        json={"title": "fits", "body": "b"},
        headers=buggy_api.auth,
        timeout=10,
    )
    assert good.status_code == 201, good.text
    [event] = subscriber.wait_for(1, timeout=10)
    assert event.args[0]["title"] == "fits"  # the only event delivered
    assert bridge.stats()["malformed"] == {}


# -- the bridge ---------------------------------------------------------------------


def test_the_bridge_refuses_another_senders_misfit_and_counts_it(router, tmp_path, subscribe):
    subscriber = subscribe("articles")
    with Bridge(tmp_path, router, metrics_port=free_port()).start() as bridge:
        sock = dealer(bridge.endpoint)
        sock.setsockopt(zmq.RCVTIMEO, 5000)
        misfit = {**article("cron"), "id": "7"}  # a string id: a cron job's bug
        sock.send(
            json.dumps(
                {"id": "bad1", "name": "article.created", "payload": misfit, "ack": True}
            ).encode()
        )
        ack = Ack.from_bytes(sock.recv())
        assert (ack.id, ack.ok) == ("bad1", False)
        assert ack.error == (
            "schema_mismatch: event 'article.created': field 'id' does not fit its schema: "
            "Input should be a valid integer"
        )
        sock.send(
            json.dumps(
                {"id": "good1", "name": "article.created", "payload": article("fits"), "ack": True}
            ).encode()
        )
        ack = Ack.from_bytes(sock.recv())
        assert (ack.id, ack.ok) == ("good1", True)
        [event] = subscriber.wait_for(1, timeout=5)
        assert event.args[0] == article("fits")
        stats = bridge.stats()
        assert stats["malformed"] == {"schema_mismatch": 1}
        assert stats["schema_refused"] == {"article.created": 1}
        assert stats["published"] == 1
        samples = scrape(bridge.metrics_url)
        assert (
            value(samples, "sandbar_bridge_frames_malformed_total", reason="schema_mismatch") == 1
        )
        assert (
            value(samples, "sandbar_bridge_events_schema_refused_total", event="article.created")
            == 1
        )
        assert "dropped malformed frame (schema_mismatch)" in bridge.proc.output()
        sock.close()
    assert [e.args[0]["title"] for e in subscriber.snapshot()] == ["fits"]
