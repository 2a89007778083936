"""The pytest plugin (sandbar/testing.py) as a project uses it: its own stack, signed-in
browsers, an API client that signs in. Here with the shipped topics and routes."""

from __future__ import annotations

import pytest
from autobahn.wamp.exception import ApplicationError


def test_a_notification_reaches_only_its_user_on_every_tab(sandbar_api, browser, subscriber):
    tab1, tab2 = subscriber("user.alice", user="alice"), subscriber("user.alice", user="alice")
    anonymous = browser()
    with pytest.raises(ApplicationError):
        anonymous.subscribe("user.alice")  # the topic's on_subscribe: sign in first
    sent = sandbar_api.sign_in("bob").post("/notifications", json={"user": "alice", "text": "hi"})
    assert sent.status_code == 202, sent.text
    for tab in (tab1, tab2):
        [event] = tab.wait_for(1)
        assert event.args[0] == {"user": "alice", "text": "hi", "from": "bob"}
        assert event.kwargs["name"] == "user.notified"


def test_writes_need_the_sign_in_the_api_fixture_gives(sandbar_api, subscriber):
    feed = subscriber("articles")
    assert sandbar_api.post("/articles", json={"title": "t", "body": "b"}).status_code == 401
    written = sandbar_api.sign_in("writer").post("/articles", json={"title": "t", "body": "b"})
    assert written.status_code == 201, written.text
    [event] = feed.wait_for(1)
    assert event.args[0]["title"] == "t"
