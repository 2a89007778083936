"""ZeroMQ CURVE: every sender proves who it is, also on loopback, and the link is encrypted.

Keys are Z85 strings (40 characters); ``sandbar curve-keys`` prints a new pair. The bridge
(server) holds its secret key and a list of allowed client public keys; each sender holds
the bridge's public key and its own secret key (bridge/keys.py: the files that carry them).

Why also on loopback: a NULL-mechanism socket accepts ZMTP/1.0 peers, and any web page can
make the browser send one (a no-cors POST whose body is a ZMTP/1.0 frame), so without
authentication every site the user visits could publish events.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import zmq
import zmq.asyncio
import zmq.auth.asyncio

log = logging.getLogger("sandbar.bridge.curve")

#: a ZAP domain on the socket makes libzmq refuse ZMTP/1.0 peers (no greeting, no mechanism)
ZAP_DOMAIN = b"sandbar.bridge"


def check_key(key: str) -> str:
    """A Z85-encoded 32-byte CURVE key, or ValueError saying how to make one."""
    try:
        if len(key) != 40:
            raise ValueError
        zmq.utils.z85.decode(key.encode())
    except ValueError:
        raise ValueError(
            "not a CURVE key: expected 40 Z85 characters; make a pair with `sandbar curve-keys`"
        ) from None
    return key


def public_key(secret_key: str) -> str:
    return zmq.curve_public(secret_key.encode()).decode()


def new_keypair() -> tuple[str, str]:
    """(public, secret)"""
    public, secret = zmq.curve_keypair()
    return public.decode(), secret.decode()


class _AllowList:
    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = {key.encode() for key in keys}

    def callback(self, domain: str, key: bytes) -> bool:
        allowed = key in self.keys
        if not allowed:
            log.warning("refused a ZeroMQ client with an unknown CURVE key %s", key.decode())
        return allowed


def serve(
    context: zmq.asyncio.Context,
    socket: zmq.asyncio.Socket,
    secret_key: str,
    allowed_clients: Iterable[str],
) -> zmq.auth.asyncio.AsyncioAuthenticator:
    """Make ``socket`` a CURVE server that admits only ``allowed_clients`` (before ``bind``).

    Fails closed: with the ZAP domain enforced, libzmq refuses every client if the
    authenticator is not answering (a CURVE server without one would admit any key).
    """
    authenticator = zmq.auth.asyncio.AsyncioAuthenticator(context)
    authenticator.start()
    provider = _AllowList(allowed_clients)
    authenticator.configure_curve_callback(ZAP_DOMAIN.decode(), credentials_provider=provider)
    socket.zap_domain = ZAP_DOMAIN
    socket.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
    socket.curve_secretkey = secret_key.encode()
    socket.curve_publickey = public_key(secret_key).encode()
    socket.curve_server = True
    return authenticator


def serve_unauthenticated(socket: zmq.asyncio.Socket, endpoint: str) -> None:
    """The explicit opt-out: NULL mechanism, said loudly at every start. The ZAP domain
    (with no handler) still refuses ZMTP/1.0 peers, so web pages cannot send; local
    processes can."""
    socket.zap_domain = ZAP_DOMAIN
    log.warning(
        "zmq.insecure_allow_unauthenticated is set: senders are NOT authenticated; any "
        "process that can reach %s can publish any event (forged articles, notifications, "
        "sign-outs). Remove the flag and give the bridge CURVE keys (zmq.curve_keys)",
        endpoint,
    )


def connect_as_client(socket: zmq.Socket[bytes], server_key: str, secret_key: str) -> None:
    """Before ``connect``: encrypt to the bridge ``server_key`` and prove who we are."""
    socket.curve_serverkey = server_key.encode()
    socket.curve_secretkey = secret_key.encode()
    socket.curve_publickey = public_key(secret_key).encode()
