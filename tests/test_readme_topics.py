"""The README's topic example runs as written: its code is extracted and served for real."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from autobahn.wamp.exception import ApplicationError

from tests.support.procs import ROOT, Router, Topics
from tests.support.wamp import Client


def readme_example() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- example: topics -->\n```python\n(.*?)```", readme, re.S)
    assert match, "README has the topic example block"
    return match.group(1)


def test_readme_topic_example(tmp_path: Path):
    (tmp_path / "my_topics.py").write_text(readme_example())
    router = Router(tmp_path).start()
    topics = Topics(tmp_path, router, app="my_topics:topics")
    topics.proc.env["PYTHONPATH"] += f":{tmp_path}"
    topics.start()
    alice, bob = Client(router.ws_url), Client(router.ws_url)
    try:
        alice.subscribe("room.lobby")
        [welcome] = alice.wait_for(1, name="room.welcome")
        assert welcome.args[0] == {"room": "lobby", "members": 1}
        bob.subscribe("room.lobby")
        assert alice.wait_for(1, name="room.join")[0].args[0] == {"joined": bob.session._authid}

        with pytest.raises(ApplicationError) as denied:
            bob.subscribe("room.staff-only")
        assert denied.value.error == "wamp.error.not_authorized"
        assert bob.call("explain.subscribe", "room.staff-only")["reason"] == "staff only"
        with pytest.raises(ApplicationError) as refused:  # who may not read may not write
            bob.call("room.staff-only", {"text": "sneaky"})
        assert (refused.value.error, refused.value.args[0]) == (
            "wamp.error.not_authorized",
            "staff only",
        )

        assert isinstance(alice.call("room.lobby", {"text": " hello "}), int)
        [message] = bob.wait_for(1, name="room.message")
        assert message.args[0] == {"text": "hello", "author": alice.session._authid}
        with pytest.raises(ApplicationError) as rejected:
            alice.call("room.lobby", {"text": ""})
        assert (rejected.value.error, rejected.value.args[0]) == (
            "sandbar.error.rejected",
            "empty message",
        )
        bob.close()
        assert alice.wait_for(1, name="room.leave")[0].args[0] == {"left": bob.session._authid}
    finally:
        alice.close()
        bob.close()
        topics.stop()
        router.stop()
