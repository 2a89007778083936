"""ZeroMQ CURVE between the API and the bridge: only senders with an allowed key get in."""

from __future__ import annotations

import time

import requests

from bridge import EventSender
from bridge.curve import new_keypair
from tests.support.procs import Api, Bridge, wait_until


def test_only_allowed_curve_keys_reach_the_bridge(router, tmp_path, subscribe):
    bridge_public, bridge_secret = new_keypair()
    api_public, api_secret = new_keypair()
    script_public, script_secret = new_keypair()
    _, stranger_secret = new_keypair()
    config = {
        "zmq": {
            "bind": "${SANDBAR_BRIDGE_BIND}",
            "curve_secret_key": bridge_secret,
            "curve_clients": [api_public, script_public],
        },
        "router": {
            "url": router.backend_url,
            "authid": "bridge",
            "ticket": "${SANDBAR_BACKEND_SECRET}",
        },
        "routes": {"article.created": {"topic": "articles"}},
    }
    bridge = Bridge(tmp_path, router, config).start()
    subscriber = subscribe("articles")
    try:
        for name, sender in {
            "no keys": EventSender(bridge.endpoint, linger_ms=0),
            "unknown key": EventSender(
                bridge.endpoint,
                linger_ms=0,
                curve_server_key=bridge_public,
                curve_secret_key=stranger_secret,
            ),
        }.items():
            sender.send("article.created", {"title": name})
        allowed = EventSender(
            bridge.endpoint, curve_server_key=bridge_public, curve_secret_key=script_secret
        )
        allowed.send("article.created", {"title": "from a keyed script"})
        wait_until(lambda: len(subscriber.snapshot()) >= 1, 5, "the keyed event")
        time.sleep(0.5)
        assert [e.args[0]["title"] for e in subscriber.snapshot()] == ["from a keyed script"]
        assert bridge.stats()["received"] == 1
        assert "refused a ZeroMQ client with an unknown CURVE key" in bridge.proc.output()

        api = Api(
            tmp_path,
            bridge.endpoint,
            bridge_curve_server_key=bridge_public,
            bridge_curve_secret_key=api_secret,
        ).start()
        try:
            created = requests.post(
                f"{api.url}/articles",
                json={"title": "via api", "body": "b"},
                headers=api.auth,
                timeout=5,
            )
            assert created.status_code == 201
            wait_until(
                lambda: any(e.args[0]["title"] == "via api" for e in subscriber.snapshot()),
                10,
                "the API's event over CURVE",
            )
        finally:
            api.stop()
    finally:
        bridge.stop()
