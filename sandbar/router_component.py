"""A component that runs inside the Crossbar router worker (``components:`` in
``.crossbar/config.yaml``): the way to run code in the router's own process."""

from __future__ import annotations

from typing import Any

from autobahn.twisted.wamp import ApplicationSession

from sandbar.heap import freeze_startup_heap
from sandbar.lifetime import die_with_parent


class HeapKeeper(ApplicationSession):
    """Freezes the router worker's start-up heap (sandbar/heap.py) once the realm is up,
    and has the worker die with the router's controller (sandbar/lifetime.py)."""

    def onJoin(self, details: Any) -> None:
        # Crossbar's worker leaves when its pipe to the controller closes, but not while
        # its reactor is blocked: the kernel ends it with a SIGKILLed controller.
        die_with_parent()
        frozen = freeze_startup_heap()
        self.log.info("froze {frozen} start-up objects out of the collector's reach", frozen=frozen)
