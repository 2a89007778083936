"""The pytest plugin (sandbar/testing.py) as a project uses it: its own stack, signed-in
browsers, an API client that signs in. Here with the shipped topics and routes."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from autobahn.wamp.exception import ApplicationError

from tests.support.procs import BIN


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


#: a fresh interpreter imports the plugin and its helpers, says what that left, then asks for
#: the session's keys as a fixture does
IMPORT_ONLY = """
import json, os, pathlib, tempfile
import sandbar.testing, sandbar.procs

def seen():
    folders = pathlib.Path(tempfile.gettempdir()).glob("sandbar-test-keys-*")
    return [sorted(k for k in os.environ if k.startswith("SANDBAR_")), len(list(folders))]

print(json.dumps(seen()))
sandbar.procs.session_keys()
print(json.dumps(seen()))
"""


def test_importing_the_plugin_makes_no_keys_and_sets_no_variables(tmp_path):
    """pytest loads sandbar.testing in any project that installs Sandbar; its helpers
    (sandbar.procs) made a key folder and set SANDBAR_* key variables on import."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBAR_")}
    env["TMPDIR"] = str(tmp_path)
    result = subprocess.run(
        [str(BIN / "python"), "-c", IMPORT_ONLY],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    imported, used = map(json.loads, result.stdout.splitlines())
    assert imported == [[], 0]
    keys = ["SANDBAR_API_BRIDGE_KEYS", "SANDBAR_BRIDGE_CURVE_KEYS", "SANDBAR_SENDER_KEYS"]
    assert used == [keys, 1]  # made on first use
    assert list(tmp_path.glob("sandbar-test-keys-*")) == []  # and removed at exit
