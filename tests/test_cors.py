"""CORS over real HTTP: the listed origins may call the API from a page, others get no grant."""

from __future__ import annotations

import requests

DEMO_ORIGIN = "http://127.0.0.1:8080"  # ApiConfig's default: the local demo page


def test_preflight_and_post_from_an_allowed_origin(api):
    preflight = requests.options(
        f"{api.url}/articles",
        headers={
            "Origin": DEMO_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        timeout=5,
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == DEMO_ORIGIN
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert (
        preflight.headers["Access-Control-Allow-Headers"]
        == "Content-Type, Authorization, X-Sandbar-Session"
    )

    created = requests.post(
        f"{api.url}/articles",
        json={"title": "t", "body": "b"},
        headers={"Origin": DEMO_ORIGIN, **api.auth},
        timeout=5,
    )
    assert created.status_code == 201
    assert created.headers["Access-Control-Allow-Origin"] == DEMO_ORIGIN
    assert "Origin" in created.headers["Vary"]

    invalid = requests.post(
        f"{api.url}/articles", json={}, headers={"Origin": DEMO_ORIGIN, **api.auth}, timeout=5
    )
    assert invalid.status_code == 400
    assert invalid.headers["Access-Control-Allow-Origin"] == DEMO_ORIGIN, "errors are readable too"


def test_other_origins_get_no_grant(api):
    response = requests.get(
        f"{api.url}/articles", headers={"Origin": "http://evil.example"}, timeout=5
    )
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


def test_origins_from_the_environment():
    from api.config import ApiConfig

    config = ApiConfig.from_env(
        {"SANDBAR_API_CORS_ORIGINS": "https://a.example, https://b.example"}
    )
    assert config.cors_origins == ("https://a.example", "https://b.example")
    assert ApiConfig.from_env({"SANDBAR_API_CORS_ORIGINS": ""}).cors_origins == ()
