"""The REST API over real HTTP: validation errors name the field, everything is JSON."""

from __future__ import annotations

import pytest
import requests


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"body": "b"}, "title", "title: is required"),
        ({"title": "", "body": "b"}, "title", "title: must not be empty"),
        ({"title": 5, "body": "b"}, "title", "title: must be a string, not int"),
        ({"title": "t"}, "body", "body: is required"),
        ({"title": "t" * 201, "body": "b"}, "title", "title: must be at most 200 characters"),
        ({"title": "\x00ºx", "body": "b"}, "title", "title: must not contain NUL characters"),
        ({"title": "t", "body": "b", "author": "x"}, "author", "author: unknown field"),
    ],
)
def test_invalid_article_is_400_naming_the_field(api, body, field, message):
    response = requests.post(f"{api.url}/articles", headers=api.auth, json=body, timeout=5)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_field"
    assert error["field"] == field
    assert error["message"].startswith(message)


def test_malformed_json_and_wrong_content_type(api):
    bad = requests.post(
        f"{api.url}/articles",
        data="{nope",
        headers={**api.auth, "Content-Type": "application/json"},
        timeout=5,
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_json"
    form = requests.post(f"{api.url}/articles", headers=api.auth, data={"title": "t"}, timeout=5)
    assert form.status_code == 400
    assert "Content-Type: application/json" in form.json()["error"]["message"]
    array = requests.post(f"{api.url}/articles", headers=api.auth, json=[1], timeout=5)
    assert array.json()["error"]["message"].startswith("request body must be a JSON object")


def test_oversized_request_is_413_json(api):
    response = requests.post(
        f"{api.url}/articles",
        headers=api.auth,
        json={"title": "t", "body": "x" * 2_000_000},
        timeout=10,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_entity_too_large"


def test_unknown_article_and_route_are_json_404(api):
    missing = requests.get(f"{api.url}/articles/999999", timeout=5)
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {"code": "not_found", "message": "article 999999 does not exist"}
    }
    assert requests.get(f"{api.url}/nope", timeout=5).json()["error"]["code"] == "not_found"
    method = requests.delete(f"{api.url}/articles", timeout=5)
    assert method.status_code == 405
    assert method.json()["error"]["code"] == "method_not_allowed"


def test_list_is_newest_first_and_limit_is_checked(api):
    for title in ("first", "second"):
        requests.post(
            f"{api.url}/articles", headers=api.auth, json={"title": title, "body": "b"}, timeout=5
        )
    listed = requests.get(f"{api.url}/articles", params={"limit": 1}, timeout=5).json()
    assert [a["title"] for a in listed["articles"]] == ["second"]
    assert listed["articles"][0]["created_at"].endswith("Z")
    bad = requests.get(f"{api.url}/articles", params={"limit": 0}, timeout=5)
    assert bad.status_code == 400
    assert bad.json()["error"]["field"] == "limit"


def test_healthz(api):
    health = requests.get(f"{api.url}/healthz", timeout=5).json()
    assert health["status"] == "ok"
    assert set(health["outbox"]) == {"backlog", "oldest_age_s", "delivery"}


def test_article_is_kept_when_the_bridge_is_down(api, bridge):
    bridge.stop()
    response = requests.post(
        f"{api.url}/articles", headers=api.auth, json={"title": "t", "body": "b"}, timeout=5
    )
    assert response.status_code == 201
    assert requests.get(f"{api.url}/articles/{response.json()['id']}", timeout=5).status_code == 200
