"""Send events to the bridge from any Python process (Flask, a worker, a cron job).

One ZeroMQ DEALER socket per process and thread: sockets are not thread-safe and
must not cross a fork (gunicorn's pre-fork workers), so each is created lazily
by the thread that uses it.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import zmq

from bridge.curve import connect_as_client
from bridge.envelope import DEFAULT_MAX_FRAME_BYTES, Envelope
from bridge.keys import SENDER_KEYS_VAR, SenderKeys, find_sender_keys

log = logging.getLogger("sandbar.bridge.client")

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"


class SendError(RuntimeError):
    """The event was not accepted for delivery; the message says why and what to do."""


class EventSender:
    """Fire-and-forget sender of event envelopes to a bridge endpoint."""

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        queue_size: int = 10_000,
        linger_ms: int = 2_000,
        curve_server_key: str | None = None,
        curve_secret_key: str | None = None,
        keys: str | Path | None = None,
    ) -> None:
        """The bridge admits only senders with CURVE keys: ``curve_server_key`` (the bridge's
        public key) and ``curve_secret_key`` (this sender's), or a key file: ``keys``, else
        ``$SANDBAR_SENDER_KEYS``, else the one ``sandbar up`` writes (``.sandbar/curve/api.keys``).
        """
        self.endpoint = endpoint
        if curve_server_key:
            self.curve: SenderKeys | None = SenderKeys(curve_server_key, curve_secret_key or "")
        else:
            self.curve = find_sender_keys(keys)
        if self.curve is None:
            log.warning(
                "no CURVE keys for the bridge at %s: it refuses unauthenticated senders unless "
                "it runs with zmq.insecure_allow_unauthenticated; give EventSender(keys=...) "
                "or set %s to a sender key file (`sandbar up` writes .sandbar/curve/api.keys)",
                endpoint,
                SENDER_KEYS_VAR,
            )
        self.max_frame_bytes = max_frame_bytes
        self.queue_size = queue_size
        self.linger_ms = linger_ms
        self._local = threading.local()

    def send(self, name: str, payload: dict[str, Any]) -> Envelope:
        """Wrap ``payload`` in an envelope and queue it for the bridge; return the envelope."""
        envelope = Envelope(name=name, payload=payload)
        self.send_envelope(envelope)
        return envelope

    def send_envelope(self, envelope: Envelope) -> None:
        try:
            frame = envelope.to_bytes()
        except (TypeError, ValueError) as exc:
            raise SendError(
                f"event '{envelope.name}': payload is not JSON-serialisable ({exc})"
            ) from None
        if len(frame) > self.max_frame_bytes:
            raise SendError(
                f"event '{envelope.name}' is {len(frame)} bytes, over the bridge limit of "
                f"{self.max_frame_bytes}: send a reference (an id or URL) instead of the data"
            )
        try:
            self._socket().send(frame, flags=zmq.NOBLOCK)
        except zmq.Again:
            raise SendError(
                f"event '{envelope.name}' not sent: {self.queue_size} events are already waiting "
                f"for the bridge at {self.endpoint}; is sandbar-bridge running and connected?"
            ) from None

    def _socket(self) -> zmq.Socket[bytes]:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            # New thread, or a forked child that inherited a parent's socket: start afresh.
            # DEALER talks to the bridge's ROUTER; without ``ack`` the bridge never answers.
            socket: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
            socket.setsockopt(zmq.SNDHWM, self.queue_size)
            socket.setsockopt(zmq.LINGER, self.linger_ms)
            if self.curve is not None:
                connect_as_client(socket, self.curve.server_key, self.curve.secret_key)
            socket.connect(self.endpoint)
            local.socket, local.pid = socket, os.getpid()
        return local.socket

    def close(self) -> None:
        """Close this thread's socket, waiting up to ``linger_ms`` for queued events to leave."""
        socket = getattr(self._local, "socket", None)
        if socket is not None and self._local.pid == os.getpid():
            socket.close()
        self._local = threading.local()
