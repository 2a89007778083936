"""The ZeroMQ bridge: events in over ZeroMQ, acknowledged WAMP publishes out.

The bridge owns its wire protocol: :mod:`bridge.envelope` defines it,
:mod:`bridge.client` sends it (from Flask or any Python process), and
:mod:`bridge.server` receives it and publishes into the router.
"""

from bridge.client import EventSender, SendError
from bridge.envelope import Envelope, MalformedFrame

__all__ = ["Envelope", "EventSender", "MalformedFrame", "SendError"]
