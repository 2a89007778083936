"""Helpers that start the real parts (router, bridge, API) for tests."""
