"""The AsyncAPI 3.0 document: generated from the topics, routes and schemas, valid against
the official AsyncAPI 3.0.0 JSON Schema (npm @asyncapi/specs, installed by `make`), served
by the API at GET /asyncapi.json."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import jsonschema
import pytest
import requests

from api.signals import Article
from sandbar.asyncapi import generate
from tests.support.procs import BIN, ROOT, SHIPPED_BRIDGE_CONFIG, base_env

SPEC = ROOT / "node_modules" / "@asyncapi" / "specs" / "schemas" / "3.0.0-without-$id.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    if not SPEC.exists():
        pytest.fail(f"{SPEC} is missing: run `make install` (npm ci installs @asyncapi/specs)")
    schema = json.loads(SPEC.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What `sandbar asyncapi` writes for the shipped config and the tests' topics app."""
    out = tmp_path_factory.mktemp("asyncapi") / "asyncapi.json"
    result = subprocess.run(
        [
            str(BIN / "sandbar"),
            "asyncapi",
            "--bridge-config",
            str(SHIPPED_BRIDGE_CONFIG),
            "--topics-app",
            "tests.topics_app:topics",
            "-o",
            str(out),
        ],
        env=base_env(PYTHONPATH=str(ROOT)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "AsyncAPI 3.0.0" in result.stdout
    return dict(json.loads(out.read_text(encoding="utf-8")))


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        assert part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    return []


def test_the_document_is_valid_asyncapi_3(validator, document):
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert errors == []
    assert document["asyncapi"] == "3.0.0"
    refs = _refs(document)
    assert len(refs) > 20
    for ref in refs:  # the schema checks a $ref's form; that it points somewhere is ours
        _resolve(document, ref)


def test_the_validator_is_real(validator, document):
    broken = {**document, "operations": {"x": {"action": "listen", "channel": {}}}}
    assert any("listen" in e.message for e in validator.iter_errors(broken))


def test_it_lists_the_projects_channels_messages_and_operations(document):
    channels = document["channels"]
    addresses = {key: channel["address"] for key, channel in channels.items()}
    assert addresses["articles"] == "articles"
    assert addresses["chat.channel"] == "chat.{channel}"
    assert addresses["user.user_id"] == "user.{user_id}"
    assert addresses["feed-prefix"] == "feed"
    assert "sandbar.auth.revoked" not in addresses.values()  # backend only
    chat = channels["chat.channel"]
    assert "matching [a-z0-9][a-z0-9_-]{0,31}" in chat["parameters"]["channel"]["description"]
    assert {"chat.message", "chat.welcome", "chat.join", "chat.leave", "chat.announcement"} <= set(
        chat["messages"]
    )
    article = _resolve(document, channels["articles"]["messages"]["article.created"]["$ref"])
    assert _resolve(document, article["payload"]["$ref"]) == Article.model_json_schema()
    kwargs = _resolve(document, article["headers"]["$ref"])
    assert set(kwargs["properties"]) == {"id", "name", "ts", "seq", "epoch"}
    operations = document["operations"]
    assert operations["articles.subscribe"]["action"] == "receive"
    assert "articles.call" not in operations  # read-only for browsers
    call = operations["chat.channel.call"]
    assert call["action"] == "send" and call["summary"] == "session.call(uri, [payload])"
    assert {e["error"] for e in call["x-sandbar-errors"]} >= {
        "sandbar.error.rejected",
        "wamp.error.not_authorized",
        "sandbar.error.rate_limited",
    }
    assert operations["cursor.room.publish"]["summary"] == "session.publish(uri, [payload])"
    print("\nchannels:", ", ".join(f"{k} ({v})" for k, v in addresses.items()))


def test_the_api_serves_it(api, validator):
    response = requests.get(f"{api.url}/asyncapi.json", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    served = response.json()
    assert list(validator.iter_errors(served)) == []
    assert served == generate(SHIPPED_BRIDGE_CONFIG, "topics.examples:topics")
