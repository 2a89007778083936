"""The router config with Crossbar proxy workers in front of the router worker.

A realm lives in one router worker (one core). Proxy workers are Crossbar's own way to
spread the rest over more cores: each one accepts browsers on the shared WebSocket port
(``endpoint.shared``: SO_REUSEPORT, the kernel balances), does WebSocket, JSON, origin
checks and ticket sign-in, and forwards each session to the router worker over rawsocket.

Here the proxies reach the router over a Unix socket in the router's private run
directory with ``anonymous-proxy``: the router takes the identity a proxy forwards on
trust, which is safe only where nobody else can connect, so never on TCP. Across hosts
(``as_core``/``as_edge``: edge nodes of proxies in front of a core router) the proxies join
over TCP with ``cryptosign-proxy`` instead, signed with node keys the core lists
(sandbar/node_keys.py). Crossbar does
not check a proxy worker's config, so it is made here from the one-worker template
rather than written by hand: a typo cannot reach a running node.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from sandbar.config import ConfigError

#: the router's authmethod for a session a proxy worker forwards (the client's is lost)
PROXY_AUTHMETHODS = ("anonymous-proxy", "cryptosign-proxy")
#: the role the proxies' ticket authenticator sessions join the router with
AUTHENTICATOR_ROLE = "authenticator"
#: the router worker's listener for its proxies, in its run directory
SOCKET_NAME = "proxies.sock"
#: AF_UNIX paths are at most 108 bytes with their NUL (sun_path)
MAX_SOCKET_PATH = 107
#: an extra path on the proxies' web root; its only purpose is to load the guard
GUARD_PATH = "sandbar-guard"
GUARD_CLASS = "sandbar.router_component.ProxyGuard"


def socket_path(run_dir: Path) -> Path:
    """Where the router listens for its proxies; it must fit in an AF_UNIX address."""
    path = run_dir.resolve() / SOCKET_NAME
    if len(str(path).encode()) > MAX_SOCKET_PATH:
        raise ConfigError(
            f"router run_dir {run_dir}: the proxies' socket {path} is longer than "
            f"{MAX_SOCKET_PATH} bytes, the limit of a Unix socket address; "
            "choose a shorter --run-dir (SANDBAR_ROUTER_RUN_DIR)"
        )
    return path


def _one(items: list[dict[str, Any]], kind: str, what: str) -> dict[str, Any]:
    found = [item for item in items if item.get("type") == kind]
    if len(found) != 1:
        raise ConfigError(f"router template: proxies need exactly one {what}, found {len(found)}")
    return found[0]


def with_proxies(
    doc: dict[str, Any], count: int, socket: Path, max_message_size: int
) -> dict[str, Any]:
    """``doc`` (the rendered one-worker config) with its web transport moved to ``count``
    proxy workers; ``max_message_size``: the largest message a proxy may forward."""
    doc = copy.deepcopy(doc)
    proxy = _move_browsers(doc, _router_listener(socket, max_message_size))
    doc["workers"].extend(proxy(number, _connection(socket)) for number in range(1, count + 1))
    return doc


def as_core(
    doc: dict[str, Any], trusted: dict[str, str], host: str, port: int, max_message_size: int
) -> dict[str, Any]:
    """The router worker alone, no browsers' transport: its edges' proxies join it over TCP
    on ``host:port`` with ``cryptosign-proxy``, signed with the node keys in ``trusted``
    (public key by node id). Never ``anonymous-proxy`` here: anyone reaching a TCP port
    could claim any identity."""
    doc = copy.deepcopy(doc)
    realm = _one(doc["workers"], "router", "router worker")["realms"][0]["name"]
    _move_browsers(doc, _core_listener(realm, trusted, host, port, max_message_size))
    doc["controller"] = {**doc.get("controller", {}), "id": "core"}
    return doc


def as_edge(doc: dict[str, Any], count: int, node_id: str, host: str, port: int) -> dict[str, Any]:
    """``count`` proxy workers with the browsers' transport, and no router worker: they
    forward every session to the core at ``host:port``, signing with this node's key."""
    doc = copy.deepcopy(doc)
    proxy = _move_browsers(doc, {})
    connection = {
        "transport": {
            "type": "rawsocket",
            "endpoint": {"type": "tcp", "host": host, "port": port},
            "serializer": "cbor",
            "url": f"rs://{host}:{port}",
        },
        "auth": {"cryptosign-proxy": {"type": "static"}},
    }
    doc["workers"] = [proxy(number, connection) for number in range(1, count + 1)]
    doc["controller"] = {**doc.get("controller", {}), "id": node_id}
    return doc


def _move_browsers(doc: dict[str, Any], listener: dict[str, Any]) -> Any:
    """Take the browsers' web transport off the router worker (in place), give the router
    ``listener`` for its proxies instead, and return ``proxy(number, connection)``, which
    makes one proxy worker serving that transport through ``connection``."""
    router = _one(doc["workers"], "router", "router worker")
    web = _one(router["transports"], "web", "web transport")
    realm = router["realms"][0]
    router["transports"].remove(web)
    if listener:
        router["transports"].append(listener)
    ticket = web["paths"]["ws"]["auth"].get("ticket")
    if ticket is not None and ticket.get("type") == "dynamic":
        realm["roles"].append(_authenticator_role(ticket["authenticator"]))
        ticket.update(
            {"authenticator-realm": realm["name"], "authenticator-role": AUTHENTICATOR_ROLE}
        )
    # every role a proxied session can have: the browsers' (decided by the authorizer)
    routed = [role["name"] for role in realm["roles"] if "authorizer" in role]
    routes = {realm["name"]: dict.fromkeys([*routed, AUTHENTICATOR_ROLE], "router")}
    web["endpoint"]["shared"] = True
    web["paths"]["/"] = {
        "type": "path",
        "paths": {"/": web["paths"]["/"], GUARD_PATH: _guard(router)},
    }

    def proxy(number: int, connection: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "proxy",
            "id": f"proxy{number}",
            "connections": {"router": copy.deepcopy(connection)},
            "routes": copy.deepcopy(routes),
            "transports": [copy.deepcopy(web)],
        }

    return proxy


def _core_listener(
    realm: str, trusted: dict[str, str], host: str, port: int, max_message_size: int
) -> dict[str, Any]:
    # Crossbar needs a role here to accept the key, then replaces the whole principal with
    # the identity the proxy forwards; the least a stray session could get is this role
    principals = {
        node_id: {"realm": realm, "role": AUTHENTICATOR_ROLE, "authorized_keys": [key]}
        for node_id, key in trusted.items()
    }
    return {
        "type": "rawsocket",
        "endpoint": {"type": "tcp", "interface": host, "port": port, "backlog": PROXY_BACKLOG},
        "serializers": ["cbor"],
        "options": {"max_message_size": max_message_size},
        "auth": {"cryptosign-proxy": {"type": "static", "principals": principals}},
    }


#: the router's listen queue for its proxies: each browser session opens its own connection
#: from a proxy, so a burst of browsers is a burst of these (Twisted's default of 50 refused
#: them when 100 browsers connected at once: "Frontend connection accept failed")
PROXY_BACKLOG = 1024


def _router_listener(socket: Path, max_message_size: int) -> dict[str, Any]:
    return {
        "type": "rawsocket",
        "endpoint": {"type": "unix", "path": str(socket), "backlog": PROXY_BACKLOG},
        "serializers": ["cbor"],
        "options": {"max_message_size": max_message_size},
        # only on a Unix socket in a private directory: the router trusts what it is told
        "auth": {"anonymous-proxy": {"type": "static"}},
    }


def _connection(socket: Path) -> dict[str, Any]:
    return {
        "transport": {
            "type": "rawsocket",
            "endpoint": {"type": "unix", "path": str(socket)},
            "serializer": "cbor",
            "url": "rs://localhost",
        },
        "auth": {"anonymous-proxy": {"type": "static"}},
    }


def _authenticator_role(procedure: str) -> dict[str, Any]:
    """The proxies call the ticket authenticator (the topics service) under this role."""
    return {
        "name": AUTHENTICATOR_ROLE,
        "permissions": [{"uri": procedure, "match": "exact", "allow": {"call": True}}],
    }


def _guard(router: dict[str, Any]) -> dict[str, Any]:
    """The proxies decode browsers' messages, so they need the router's guard
    (sandbar/router_guard.py) too. A proxy worker hosts no components; a web resource is
    the one way to run code in it, and the root's resources exist before it listens."""
    guards = [
        component
        for component in router.get("components", [])
        if component.get("classname") == "sandbar.router_component.RouterGuard"
    ]
    if len(guards) != 1:
        raise ConfigError("router template: proxies need the RouterGuard component, once")
    guard = guards[0]
    return {"type": "resource", "classname": GUARD_CLASS, "extra": dict(guard.get("extra", {}))}
