"""Running a test without and with Crossbar proxy workers in front of the router."""

from __future__ import annotations

import pytest

#: the proxy worker counts a parametrized test runs with; None is no proxies, as a test
#: that is not parametrized gets, so both share one instance of a module-scoped fixture
COUNTS = (None, 2)
IDS = ("direct", "proxies2")

#: the session ``router`` fixture (tests/conftest.py), without and with 2 proxy workers:
#: ``@WITH_PROXIES`` on a test, or ``pytestmark = WITH_PROXIES`` on a module
WITH_PROXIES = pytest.mark.parametrize("router", COUNTS, indirect=True, ids=IDS)
#: the same for a module's own ``stack`` fixture, which reads ``proxies_of(request)``
WITH_PROXIES_STACK = pytest.mark.parametrize("stack", COUNTS, indirect=True, ids=IDS)


def proxies_of(request: pytest.FixtureRequest) -> int:
    """How many proxy workers a parametrized fixture is asked for (0 unless it is)."""
    return int(getattr(request, "param", None) or 0)
