"""Issue 12 H1: nobody without keys can inject events through the bridge's ZeroMQ port.

Against a stack started exactly as ``sandbar up`` starts it (its own key files, nothing
from the test session): a raw TCP client speaking ZMTP/1.0, the same bytes behind an HTTP
request line as a browser sends them, a NULL-mechanism DEALER, and a real Chromium page
doing a cross-origin ``fetch(..., {mode: "no-cors"})`` all deliver nothing to subscribers,
while the API and a sender using the key file ``sandbar up`` wrote still do.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import zmq

from bridge import EventSender
from tests.support.browser import launch, missing_prerequisite
from tests.support.events import article
from tests.support.procs import BIN, KEY_VARS, Proc, base_env, dealer, free_port, wait_until
from tests.support.wamp import Subscriber

SLED = b"\x01\x02" * 200  # ZMTP/1.0 one-byte-length frames: resynchronises after any header


def forged(title: str) -> bytes:
    """An envelope small enough for a one-byte ZMTP/1.0 length (under 255 bytes)."""
    frame = json.dumps({"name": "article.created", "payload": {"title": title}}).encode()
    assert len(frame) < 250
    return frame


def zmtp1_frame(body: bytes) -> bytes:
    """ZMTP/1.0: one length byte (flags byte included), a flags byte, the body."""
    return bytes([len(body) + 1, 0]) + body


@dataclass
class UpStack:
    proc: Proc
    run_dir: Path
    router_port: int
    api_port: int
    bridge_port: int

    @property
    def bridge_endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.bridge_port}"

    def subscriber(self) -> Subscriber:
        return Subscriber(f"ws://127.0.0.1:{self.router_port}/ws", ["articles"]).start()

    def post_article(self, title: str) -> None:
        """Through the API (a keyed sender), signed in as the demo user."""
        api = f"http://127.0.0.1:{self.api_port}"
        token = requests.post(
            f"{api}/auth/token", timeout=5, json={"username": "demo", "password": "sandbar-demo"}
        ).json()["token"]
        created = requests.post(
            f"{api}/articles",
            json={"title": title, "body": "b"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        assert created.status_code == 201, created.text


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpStack]:
    """``sandbar up`` on free ports with its own run dir, as a user starts it."""
    workdir = tmp_path_factory.mktemp("up")
    ports = {name: free_port() for name in ("router", "backend", "api", "bridge")}
    argv = [str(BIN / "sandbar"), "up", "--run-dir", str(workdir / "run")]
    for name, port in ports.items():
        argv += [f"--{name}-port", str(port)]
    env = {k: v for k, v in base_env(SANDBAR_DEV="1").items() if k not in KEY_VARS}
    proc = Proc("up", argv, env, workdir).start()
    try:
        wait_until(lambda: "Sandbar is ready" in proc.output(), 90, "sandbar up ready", 0.2)
        yield UpStack(proc, workdir / "run", ports["router"], ports["api"], ports["bridge"])
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.stop(timeout=30)


def titles(subscriber: Subscriber) -> list[str]:
    return [event.args[0]["title"] for event in subscriber.snapshot()]


def delivered_after(up: UpStack, subscriber: Subscriber, marker: str) -> list[str]:
    """Everything the subscriber got up to a real article posted last (in order)."""
    up.post_article(marker)
    wait_until(lambda: marker in titles(subscriber), 15, f"the real article {marker!r}")
    return titles(subscriber)


def test_sandbar_up_makes_a_private_run_dir(up):
    """The router (started first) made it 0755 while the database in it was 0600."""
    modes = {
        p.name: oct(stat.S_IMODE(p.stat().st_mode))
        for p in (up.run_dir, *up.run_dir.iterdir())
        if p.is_dir()
    }
    assert {"run", "router", "curve"} <= modes.keys(), modes
    assert set(modes.values()) == {"0o700"}, modes  # every folder the stack made


def test_sandbar_up_makes_private_key_files(up):
    keys = up.run_dir / "curve"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    for name in ("bridge.keys", "api.keys"):
        assert stat.S_IMODE((keys / name).stat().st_mode) == 0o600, name
    assert "CURVE on: 1 allowed sender keys" in up.proc.output()


def _inject_raw(port: int, data: bytes) -> bool:
    """Send ``data`` over plain TCP; True if the bridge hung up (refused the handshake).
    libzmq may send the start of its own greeting before it reads ours: read to the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            raw.sendall(data)
            while raw.recv(4096):
                pass
            return True
        except TimeoutError:
            return False  # still open after 5 s of silence: the bridge kept listening
        except OSError:
            return True


def test_raw_zmtp1_injection_delivers_nothing(up):
    subscriber = up.subscriber()
    frame = zmtp1_frame(forged("forged over ZMTP/1.0"))
    try:
        hung_up = [
            _inject_raw(up.bridge_port, b"\x01\x00" + frame),  # an empty identity, then a frame
            _inject_raw(up.bridge_port, b"POST / HTTP/1.1\r\nHost: x\r\n\r\n" + SLED + frame),
        ]
        assert delivered_after(up, subscriber, "real after zmtp1") == ["real after zmtp1"]
        assert hung_up == [True, True]
    finally:
        subscriber.close()


def test_null_mechanism_dealer_delivers_nothing(up):
    subscriber = up.subscriber()
    sock = dealer(up.bridge_endpoint, keys=None)
    try:
        sock.send(forged("forged by a NULL dealer"))
        sock.send(json.dumps({"name": "auth.revoked", "payload": {"user": "demo"}}).encode())
        time.sleep(1)  # libzmq would have delivered by now (it does on an unkeyed bridge)
        assert delivered_after(up, subscriber, "real after null") == ["real after null"]
        assert sock.poll(0, zmq.POLLIN) == 0
    finally:
        sock.close(linger=0)
        subscriber.close()


def test_a_script_with_the_key_file_sandbar_up_wrote_delivers(up):
    """The cron-job case: ``EventSender(keys=...)`` with the file from the run dir."""
    subscriber = up.subscriber()
    sender = EventSender(up.bridge_endpoint, keys=up.run_dir / "curve" / "api.keys")
    try:
        sender.send("article.created", article("from a keyed script"))
        wait_until(lambda: titles(subscriber) == ["from a keyed script"], 10, "keyed event")
    finally:
        sender.close()
        subscriber.close()


ATTACK_PAGE = """<!doctype html><title>an ordinary web page</title><script>
const sled = "\\x01\\x02".repeat(200);
const envelope = JSON.stringify({name: "article.created", payload: {title: "forged by a page"}});
const frame = String.fromCharCode(envelope.length + 1, 0) + envelope;
window.attack = async (url) => {
  try { await fetch(url, {mode: "no-cors", method: "POST", body: sled + frame}); }
  catch (e) { return String(e); }
  return "sent";
};
</script>"""


class _AttackerSite(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = ATTACK_PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def attacker_site() -> Iterator[str]:
    """The attacker's page, on an origin of its own (another port)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _AttackerSite)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def tcp_recorder() -> Iterator[tuple[int, bytearray]]:
    """A plain TCP port recording what arrives: proof that the browser sends the bytes."""
    received = bytearray()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def record() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(5)
                while chunk := conn.recv(65536):
                    received.extend(chunk)
                    if b"forged by a page" in received:
                        return

    thread = threading.Thread(target=record, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], received
    finally:
        thread.join(10)
        listener.close()


def test_a_web_page_cannot_inject_through_the_bridge_port(up):
    problem = missing_prerequisite()
    if problem:
        pytest.fail(problem)
    subscriber = up.subscriber()
    try:
        with launch() as browser, attacker_site() as site:
            page = browser.new_page()
            page.goto(site)
            attack = "url => Promise.race([attack(url), new Promise(r => setTimeout(r, 5000))])"
            with tcp_recorder() as (port, received):  # the control: the bytes do go out
                page.evaluate(attack, f"http://127.0.0.1:{port}/")
            assert SLED in received and b'{"title":"forged by a page"}' in received
            page.evaluate(attack, f"http://127.0.0.1:{up.bridge_port}/")
            time.sleep(1)
        assert delivered_after(up, subscriber, "real after the page") == ["real after the page"]
    finally:
        subscriber.close()
