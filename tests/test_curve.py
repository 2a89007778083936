"""ZeroMQ CURVE between the API and the bridge: only senders with an allowed key get in."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import stat
import subprocess
import time

import requests
import zmq
import zmq.asyncio

from bridge import EventSender, curve
from bridge.curve import new_keypair, public_key
from bridge.keys import load_bridge_keys, load_sender_keys
from tests.support.procs import (
    BIN,
    KEY_VARS,
    SHIPPED_BRIDGE_CONFIG,
    Api,
    Bridge,
    base_env,
    dealer,
    wait_until,
)


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


def _run_bridge(config_path, *, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "sandbar-bridge"), str(config_path), *(["--check"] if check else [])],
        env={k: v for k, v in base_env(**env).items() if k not in KEY_VARS or k in env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_bridge_refuses_to_start_without_keys():
    checked = _run_bridge(SHIPPED_BRIDGE_CONFIG)  # --check needs no secrets, and says so
    assert checked.returncode == 0, checked.stderr
    assert "not set, so not checked: zmq.curve_keys" in checked.stdout
    result = _run_bridge(SHIPPED_BRIDGE_CONFIG, check=False)
    assert result.returncode == 2
    assert "senders must authenticate" in result.stderr
    for fix in (
        "zmq.curve_keys",
        "sandbar curve-keys --init DIR",
        "insecure_allow_unauthenticated",
    ):
        assert fix in result.stderr


def test_a_missing_or_broken_key_file_is_named(tmp_path):
    missing = _run_bridge(SHIPPED_BRIDGE_CONFIG, SANDBAR_BRIDGE_CURVE_KEYS=str(tmp_path / "no"))
    assert missing.returncode == 2
    assert f"cannot read CURVE key file {tmp_path / 'no'}" in missing.stderr
    broken = tmp_path / "bridge.keys"
    broken.write_text("secret_key = short\n")
    result = _run_bridge(SHIPPED_BRIDGE_CONFIG, SANDBAR_BRIDGE_CURVE_KEYS=str(broken))
    assert result.returncode == 2
    assert "'secret_key' is not a CURVE key" in result.stderr


def test_curve_keys_init_makes_private_files_once(tmp_path):
    folder = tmp_path / "keys"
    subprocess.run([str(BIN / "sandbar"), "curve-keys", "--init", str(folder)], check=True)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    first = {}
    for name in ("bridge.keys", "api.keys"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
        first[name] = (folder / name).read_text()
    bridge, sender = load_bridge_keys(folder / "bridge.keys"), load_sender_keys(folder / "api.keys")
    assert bridge.clients == (public_key(sender.secret_key),)
    assert sender.server_key == public_key(bridge.secret_key)
    assert bridge.secret_key not in repr(bridge) and sender.secret_key not in repr(sender)
    subprocess.run([str(BIN / "sandbar"), "curve-keys", "--init", str(folder)], check=True)
    assert {name: (folder / name).read_text() for name in first} == first  # kept


def _insecure_config(router) -> dict[str, object]:
    return {
        "zmq": {"bind": "${SANDBAR_BRIDGE_BIND}", "insecure_allow_unauthenticated": True},
        "router": {
            "url": router.backend_url,
            "authid": "bridge",
            "ticket": "${SANDBAR_BACKEND_SECRET}",
        },
        "routes": {"article.created": {"topic": "articles"}},
    }


def test_the_opt_out_is_loud_and_still_refuses_zmtp1(router, tmp_path, subscribe):
    """``insecure_allow_unauthenticated``: local NULL senders get in, web pages do not."""
    bridge = Bridge(tmp_path, router, _insecure_config(router)).start()
    subscriber = subscribe("articles")
    try:
        assert "zmq.insecure_allow_unauthenticated is set: senders are NOT authenticated" in (
            bridge.proc.output()
        )
        body = json.dumps({"name": "article.created", "payload": {"title": "zmtp1"}}).encode()
        with socket.create_connection(("127.0.0.1", bridge.port), timeout=5) as raw:
            raw.sendall(b"\x01\x00" + bytes([len(body) + 1, 0]) + body)
            with contextlib.suppress(ConnectionResetError):  # libzmq hangs up on ZMTP/1.0
                while raw.recv(4096):  # after the start of its own greeting, perhaps
                    pass
        sock = dealer(bridge.endpoint, keys=None)
        sock.send(json.dumps({"name": "article.created", "payload": {"title": "null"}}).encode())
        wait_until(lambda: len(subscriber.snapshot()) >= 1, 5, "the NULL sender's event")
        time.sleep(0.5)
        assert [e.args[0]["title"] for e in subscriber.snapshot()] == ["null"]
        sock.close()
    finally:
        bridge.stop()


async def _allowed_client_gets_in(*, key_check_running: bool) -> bool:
    context = zmq.asyncio.Context()
    server = context.socket(zmq.ROUTER)
    bridge_public, bridge_secret = new_keypair()
    client_public, client_secret = new_keypair()
    authenticator = curve.serve(context, server, bridge_secret, [client_public])
    if not key_check_running:
        authenticator.stop()
    port = server.bind_to_random_port("tcp://127.0.0.1")
    client: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    curve.connect_as_client(client, bridge_public, client_secret)
    client.connect(f"tcp://127.0.0.1:{port}")
    client.send(b"hello")
    try:
        return bool(await server.poll(2000))
    finally:
        client.close(linger=0)
        server.close(linger=0)
        if key_check_running:
            authenticator.stop()
        context.term()


def test_curve_fails_closed_when_its_key_check_is_not_answering():
    """A CURVE server with no ZAP handler would admit any key; the enforced domain refuses."""
    assert asyncio.run(_allowed_client_gets_in(key_check_running=True))
    assert not asyncio.run(_allowed_client_gets_in(key_check_running=False))
