"""Two (or more) Crossbar router nodes joined by router-to-router links (rlinks), for the
rlinks evaluation (the README (Scaling, rlinks)). Not a shipped layout: rlinks lose events across a
restart of either node, so Sandbar does not offer this to users.

Each node is rendered from the shipped template (.crossbar/config.yaml) onto free ports,
then gets, in the ``sandbar`` realm:

- a ``rlink`` role: what a peer's rlink session may do here (subscribe only: forwarding
  is pull-based, the peer subscribes here for what its own clients subscribed to);
- a rawsocket transport for peers, cryptosign with the peers' node public keys;
- one rlink per peer, ``forward_local_events`` only (full mesh; invocations are not
  forwarded: every node has its own topics service registering the same procedures).
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any, Self

import yaml

from sandbar.config import expand_env
from sandbar.node_keys import node_key
from sandbar.paths import ROUTER_TEMPLATE
from sandbar.peers import Client
from sandbar.procs import BIN, Proc, base_env, free_port, http_ok, wait_until
from sandbar.router import RouterConfig

REALM = "sandbar"
RLINK_ROLE = "rlink"


def _rlink_role() -> dict[str, Any]:
    return {
        "name": RLINK_ROLE,
        "permissions": [
            {
                "uri": "",
                "match": "prefix",
                "allow": {"call": False, "register": False, "publish": False, "subscribe": True},
                "disclose": {"caller": True, "publisher": True},
                "cache": True,
            }
        ],
    }


class LinkedNode:
    """One Crossbar node of the mesh: browsers' WebSocket, backends' rawsocket, peers' rlink
    transport, each on a free port."""

    def __init__(self, workdir: Path, name: str, log_level: str = "info") -> None:
        self.name = name
        self.cbdir = workdir / name
        self.port, self.backend_port, self.rlink_port = free_port(), free_port(), free_port()
        self.public_key = node_key(self.cbdir)  # each peer lists it for the rlink role
        argv = [str(BIN / "crossbar"), "start", "--cbdir", str(self.cbdir), "--loglevel", log_level]
        self.proc = Proc(f"node-{name}", argv, base_env(), workdir)

    @property
    def backend_url(self) -> str:
        return f"rs://127.0.0.1:{self.backend_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def render(self, peers: list[LinkedNode]) -> dict[str, Any]:
        """Write this node's config.yaml (the shipped template plus the mesh) and return it."""
        settings = RouterConfig(port=self.port, backend_port=self.backend_port)
        text = expand_env(
            ROUTER_TEMPLATE.read_text(encoding="utf-8"),
            settings.template_vars(),
            source=str(ROUTER_TEMPLATE),
            defaults_only=True,
        )
        config: dict[str, Any] = yaml.safe_load(text)
        worker = config["workers"][0]
        realm = next(r for r in worker["realms"] if r["name"] == REALM)
        realm["roles"].append(_rlink_role())
        realm["rlinks"] = [self._rlink_to(peer) for peer in peers]
        worker["transports"].append(self._peer_transport(peers))
        (self.cbdir / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        return config

    def _rlink_to(self, peer: LinkedNode) -> dict[str, Any]:
        return {
            "id": f"to-{peer.name}",
            "realm": REALM,
            "forward_local_events": True,
            "forward_remote_events": False,
            "forward_local_invocations": False,
            "forward_remote_invocations": False,
            "transport": {
                "type": "rawsocket",
                "serializer": "cbor",
                "endpoint": {"type": "tcp", "host": "127.0.0.1", "port": peer.rlink_port},
                "url": f"rs://127.0.0.1:{peer.rlink_port}",
            },
        }

    def _peer_transport(self, peers: list[LinkedNode]) -> dict[str, Any]:
        principal = {
            "realm": REALM,
            "role": RLINK_ROLE,
            "authorized_keys": [peer.public_key for peer in peers],
        }
        return {
            "type": "rawsocket",
            "endpoint": {"type": "tcp", "interface": "127.0.0.1", "port": self.rlink_port},
            "serializers": ["cbor"],
            "auth": {"cryptosign": {"type": "static", "principals": {RLINK_ROLE: principal}}},
        }

    def start(self, timeout: float = 30.0) -> Self:
        self.launch()
        self.wait_ready(timeout)
        return self

    def launch(self) -> None:
        """Start ``crossbar start`` (a SIGTERMed node leaves its node.pid behind)."""
        (self.cbdir / "node.pid").unlink(missing_ok=True)
        self.proc.start()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until every listener of the node accepts (its rlinks may still be connecting)."""
        try:
            wait_until(
                lambda: (
                    http_ok(f"http://127.0.0.1:{self.port}/")
                    and _port_open(self.backend_port)
                    and _port_open(self.rlink_port)
                ),
                timeout,
                f"node {self.name} ready",
            )
        except BaseException:
            self.proc.stop()
            raise

    def subscribers(self, topic: str) -> int:
        """Sessions subscribed to exactly ``topic`` on this node (a peer's rlink counts one),
        from the router's meta API."""
        client = Client(self.backend_url, authid="topics")
        try:
            subscription = client.call("wamp.subscription.lookup", topic)
            if subscription is None:
                return 0
            return int(client.call("wamp.subscription.count_subscribers", subscription))
        finally:
            client.close()

    def links_ready(self) -> int:
        """How many times an rlink of this node has joined its peer (from the node's log)."""
        return len(re.findall(r"rlink remote session ready", self.proc.output()))

    def links_lost(self) -> int:
        return len(re.findall(r"rlink remote session left", self.proc.output()))

    def stop(self) -> None:
        self.proc.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def bridge_config(url: str) -> dict[str, Any]:
    """A bridge config for node A: fast reconnects; an exact, a prefix-reachable and a
    per-user route."""
    return {
        "zmq": {"bind": "${SANDBAR_BRIDGE_BIND}"},
        "router": {
            "url": url,
            "authid": "bridge",
            "ticket": "${SANDBAR_BACKEND_SECRET}",
            "retry_initial_delay": 0.1,
            "retry_max_delay": 0.5,
        },
        "publish": {"max_in_flight": 16, "buffer_size": 10000},
        "routes": {
            "article.created": {"topic": "articles"},
            "chat.announcement": {"topic": "chat.{channel}"},
            "user.notified": {"topic": "user.{user}", "to_authids": "user"},
        },
    }


def start_all(nodes: list[LinkedNode], timeout: float = 60.0) -> None:
    """Start the nodes side by side (each takes seconds to boot), then wait for all."""
    for node in nodes:
        node.launch()
    try:
        for node in nodes:
            node.wait_ready(timeout)
    except BaseException:
        for node in nodes:
            node.stop()
        raise


def mesh(workdir: Path, names: tuple[str, ...] = ("a", "b")) -> list[LinkedNode]:
    """Nodes linked each to every other (configs written, not started)."""
    nodes = [LinkedNode(workdir, name) for name in names]
    for node in nodes:
        node.render([peer for peer in nodes if peer is not node])
    return nodes


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
