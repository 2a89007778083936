"""The WAMP test peers moved into the package (sandbar/peers.py) for the pytest plugin."""

from sandbar.peers import Client, Event, LoopThread, Subscriber, backend_call

__all__ = ["Client", "Event", "LoopThread", "Subscriber", "backend_call"]
