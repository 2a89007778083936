"""Edge nodes in front of a core router (sandbar-router --mode core/edge): the rendered
configs, the settings refused at load, and real nodes on loopback: an edge whose key the
core trusts forwards a browser's session with its identity; an edge it does not trust is
refused. The containers' layout is tests/test_edge_compose.py."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from autobahn.wamp.exception import ApplicationError

from sandbar.config import ConfigError
from sandbar.node_keys import make_node_keys
from sandbar.router import RouterConfig, config_from_args, render
from sandbar.router_proxies import PROXY_BACKLOG
from tests.support.procs import BIN, SECRET, Proc, base_env, free_port, http_ok, wait_until
from tests.support.wamp import Client


def _doc(cbdir: Path) -> dict[str, Any]:
    return dict(yaml.safe_load((cbdir / "config.yaml").read_text()))


def _transports(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for worker in doc["workers"] for t in worker.get("transports", [])]


def test_the_core_listens_for_its_edges_with_cryptosign_proxy_only(tmp_path: Path) -> None:
    keys = make_node_keys(tmp_path / "keys", ["edge_a", "edge_b"])
    config = RouterConfig(
        mode="core", trusted_keys=tmp_path / "keys" / "trusted", run_dir=tmp_path / "core"
    )
    doc = _doc(render(config))
    [router] = doc["workers"]
    assert router["type"] == "router" and doc["controller"]["id"] == "core"
    assert "web" not in [t["type"] for t in router["transports"]], "no browsers at the core"
    [edges] = [t for t in router["transports"] if "cryptosign-proxy" in t["auth"]]
    assert edges["endpoint"] == {
        "type": "tcp",
        "interface": "127.0.0.1",
        "port": 8082,
        "backlog": PROXY_BACKLOG,  # a burst of browsers is a burst of edge connections
    }
    principals = edges["auth"]["cryptosign-proxy"]["principals"]
    assert {node: p["authorized_keys"] for node, p in principals.items()} == {
        node: [key] for node, key in keys.items()
    }
    assert not any("anonymous-proxy" in t.get("auth", {}) for t in _transports(doc))
    roles = {role["name"] for role in router["realms"][0]["roles"]}
    assert "authenticator" in roles  # the edges' proxies call the ticket authenticator


def test_an_edge_is_proxies_only_and_signs_with_its_own_key(tmp_path: Path) -> None:
    make_node_keys(tmp_path, ["edge_a"])
    config = RouterConfig(
        mode="edge",
        node_id="edge_a",
        core_url="rs://core.example:8082",
        proxies=2,
        run_dir=tmp_path / "edge_a",
        port=18080,
    )
    doc = _doc(render(config))
    assert doc["controller"]["id"] == "edge_a"
    assert [w["type"] for w in doc["workers"]] == ["proxy", "proxy"]
    for proxy in doc["workers"]:
        connection = proxy["connections"]["router"]
        assert connection["auth"] == {"cryptosign-proxy": {"type": "static"}}
        assert connection["transport"]["endpoint"] == {
            "type": "tcp",
            "host": "core.example",
            "port": 8082,
        }
        [web] = proxy["transports"]
        assert web["endpoint"]["shared"] is True and web["endpoint"]["port"] == 18080
        assert set(proxy["routes"]["sandbar"]) == {"anonymous", "user", "staff", "authenticator"}
    assert "SANDBAR_BACKEND_SECRET" not in (tmp_path / "edge_a" / "config.yaml").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--mode", "edge", "--proxies", "1", "--core-url", "rs://c:8082"], "needs node_id"),
        (["--mode", "edge", "--proxies", "1", "--node-id", "edge_a"], "needs core_url"),
        (["--mode", "edge", "--node-id", "edge_a", "--core-url", "rs://c:1"], "1 or more"),
        (["--mode", "edge", "--proxies", "1", "--node-id", "edge-a"], "Crossbar's rule"),
        (
            ["--mode", "edge", "--proxies", "1", "--node-id", "e_a", "--core-url", "ws://c/ws"],
            "rs://",
        ),
        (["--mode", "core"], "needs trusted_keys"),
        (["--mode", "core", "--trusted-keys", "/k", "--proxies", "2"], "on its edges"),
        (["--mode", "cluster"], "'single', 'core' or 'edge'"),
    ],
)
def test_bad_edge_settings_are_refused_at_load_naming_the_fix(
    argv: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_args(argv)


def test_keys_missing_or_untrusted_are_refused_before_crossbar_starts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no key\.priv.*sandbar node-keys"):
        render(
            RouterConfig(
                mode="edge", node_id="e_a", core_url="rs://c:1", proxies=1, run_dir=tmp_path
            )
        )
    (tmp_path / "trusted").mkdir()
    with pytest.raises(ConfigError, match=r"no <node id>\.pub file"):
        render(RouterConfig(mode="core", trusted_keys=tmp_path / "trusted", run_dir=tmp_path / "c"))
    (tmp_path / "trusted" / "edge_a.pub").write_text("public-key-ed25519: nothex\n")
    with pytest.raises(ConfigError, match=r"edge_a\.pub: no 'public-key-ed25519"):
        render(RouterConfig(mode="core", trusted_keys=tmp_path / "trusted", run_dir=tmp_path / "c"))


def test_node_keys_are_made_once_and_kept(tmp_path: Path) -> None:
    first = make_node_keys(tmp_path, ["edge_a"])
    again = subprocess.run(
        [str(BIN / "sandbar"), "node-keys", str(tmp_path), "edge_a", "edge_b"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert f"edge_a: {first['edge_a']}" in again.stdout
    assert (tmp_path / "edge_a" / "key.priv").stat().st_mode & 0o077 == 0
    assert sorted(p.name for p in (tmp_path / "trusted").iterdir()) == ["edge_a.pub", "edge_b.pub"]


class _Node:
    def __init__(self, workdir: Path, name: str, argv: list[str], port: int = 0) -> None:
        self.port = port
        self.proc = Proc(name, [str(BIN / "sandbar-router"), *argv], base_env(), workdir)

    def start(self, ready: Any, timeout: float = 60) -> _Node:
        self.proc.start()
        try:
            wait_until(ready, timeout, f"{self.proc.name} ready")
        except BaseException:
            print(self.proc.output()[-3000:])
            self.proc.stop()
            raise
        return self


def test_a_trusted_edge_forwards_the_browser_and_an_untrusted_one_is_refused(
    tmp_path: Path,
) -> None:
    make_node_keys(tmp_path / "keys", ["edge_a"])
    make_node_keys(tmp_path / "other", ["edge_b"])  # a key the core was never given
    backend, edge_port = free_port(), free_port()
    core = _Node(tmp_path, "core", [
        "--mode=core", f"--backend-port={backend}", f"--edge-port={edge_port}",
        f"--trusted-keys={tmp_path / 'keys' / 'trusted'}", f"--run-dir={tmp_path / 'core'}",
    ])  # fmt: skip
    core.start(lambda: _backend_answers(backend))
    health = [str(BIN / "sandbar"), "health", "router", "--url", f"rs://127.0.0.1:{backend}"]
    checked = subprocess.run(health, capture_output=True, text=True, timeout=60, env=base_env())
    assert checked.returncode == 0, checked.stderr  # the core's container healthcheck
    edges = []
    try:
        for name, keys in (("edge_a", "keys"), ("edge_b", "other")):
            port = free_port()
            node = _Node(tmp_path, name, [
                "--mode=edge", f"--node-id={name}", f"--core-url=rs://127.0.0.1:{edge_port}",
                "--proxies=1", f"--port={port}", f"--run-dir={tmp_path / keys / name}",
            ], port)  # fmt: skip
            edges.append(node.start(lambda p=port: http_ok(f"http://127.0.0.1:{p}/")))
        browser = Client(f"ws://127.0.0.1:{edges[0].port}/ws")
        try:
            [session] = [s for s in _sessions(backend) if s["authrole"] == "anonymous"]
            assert session["authid"] == browser.session.authid
            assert session["authmethod"] == "cryptosign-proxy"
        finally:
            browser.close()
        with pytest.raises(ApplicationError) as refused:
            Client(f"ws://127.0.0.1:{edges[1].port}/ws")
        assert refused.value.error == "wamp.error.authentication_failed"
        assert "edge_b" not in {s["authid"] for s in _sessions(backend)}
    finally:
        for node in [*edges, core]:
            node.proc.stop()


def _backend_answers(port: int) -> bool:
    try:
        client = Client(f"rs://127.0.0.1:{port}", authid="topics", ticket=SECRET)
    except Exception:
        return False
    client.close()
    return True


def _sessions(port: int) -> list[dict[str, Any]]:
    client = Client(f"rs://127.0.0.1:{port}", authid="topics", ticket=SECRET)
    try:
        return [client.call("wamp.session.get", i) for i in client.call("wamp.session.list")]
    finally:
        client.close()
