"""Sandbar: real-time web apps on WAMP (Flask API → ZeroMQ bridge → Crossbar router → browsers)."""

__version__ = "0.1.0"
