"""Running a test without and with Crossbar proxy workers in front of the router."""

from __future__ import annotations

import pytest

#: the proxy worker counts a parametrized test runs with
COUNTS = (0, 2)
IDS = ("direct", "proxies2")

#: the session ``router`` fixture (tests/conftest.py), without and with 2 proxy workers:
#: ``@WITH_PROXIES`` on a test, or ``pytestmark = WITH_PROXIES`` on a module
WITH_PROXIES = pytest.mark.parametrize("router", COUNTS, indirect=True, ids=IDS)
