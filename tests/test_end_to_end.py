"""The product's main path, all real: HTTP POST → API → ZeroMQ → bridge → Crossbar → subscriber."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import requests


def test_post_article_reaches_subscriber_with_envelope_id(api, subscribe):
    subscriber = subscribe("articles")

    response = requests.post(
        f"{api.url}/articles", headers=api.auth, json={"title": "Hello", "body": "World"}, timeout=5
    )
    assert response.status_code == 201, response.text
    article = response.json()
    assert response.headers["Location"] == f"/articles/{article['id']}"

    [event] = subscriber.wait_for(1, timeout=5)
    assert event.topic == "articles"
    assert event.args == (article,)
    assert event.kwargs["name"] == "article.created"
    assert re.fullmatch(r"[0-9a-f]{32}", event.kwargs["id"])
    assert isinstance(event.kwargs["ts"], int)

    listed = requests.get(f"{api.url}/articles", timeout=5).json()["articles"]
    assert article in listed
    assert requests.get(f"{api.url}/articles/{article['id']}", timeout=5).json() == article


def test_concurrent_posts_to_two_workers_arrive_exactly_once(api, subscribe):
    subscriber = subscribe("articles")
    count = 200
    assert api.auth  # sign in once, before the threads share it

    def post(i: int) -> int:
        with requests.Session() as http:
            response = http.post(
                f"{api.url}/articles",
                headers=api.auth,
                json={"title": f"t{i}", "body": "b"},
                timeout=10,
            )
            assert response.status_code == 201, response.text
            return int(response.json()["id"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        ids = list(pool.map(post, range(count)))

    events = subscriber.wait_for(count, timeout=20)
    received = [event.args[0]["id"] for event in events]
    envelope_ids = [event.kwargs["id"] for event in events]
    assert sorted(received) == sorted(ids), "every committed article is published once"
    assert len(set(envelope_ids)) == count, "no envelope delivered twice"
    serving_pids = set(
        re.findall(r'"POST /articles HTTP/1.1" 201 .* pid=<(\d+)>', api.proc.output())
    )
    assert len(serving_pids) == 2, "the posts were served by both gunicorn workers"
