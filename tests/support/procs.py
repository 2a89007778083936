"""The process helpers moved into the package (sandbar/procs.py) for the pytest plugin."""

from sandbar.procs import (
    BIN,
    ROOT,
    SECRET,
    SHIPPED_BRIDGE_CONFIG,
    TOKEN_SECRET,
    Api,
    Bridge,
    Proc,
    Router,
    Topics,
    base_env,
    free_port,
    http_ok,
    wait_until,
)

__all__ = [
    "BIN",
    "ROOT",
    "SECRET",
    "SHIPPED_BRIDGE_CONFIG",
    "TOKEN_SECRET",
    "Api",
    "Bridge",
    "Proc",
    "Router",
    "Topics",
    "base_env",
    "free_port",
    "http_ok",
    "wait_until",
]
