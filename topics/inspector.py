"""The inspector's backend: staff-only procedures that show the stack live and answer
"why did this user not get that event?" (README, The inspector).

Browsers reach it only as ``inspect.*``: the authorizer lets a session call those
procedures and subscribe to :data:`TAP_TOPIC` only if its role is :data:`STAFF`, and
every procedure checks the caller's role again itself (:func:`require_staff`), so a
router misconfiguration cannot open it. Parts register their procedures through
:class:`Inspector`, a registry like the topics': ``add_procedure`` and its decorator
``procedure``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallDetails

#: the prefix of every inspector procedure a browser may call (staff only)
PREFIX = "inspect."
#: the topic a tap forwards events on, to the staff sessions that asked for them
TAP_TOPIC = "inspect.tap"
#: the role whose sessions may use the inspector
STAFF = "staff"
NOT_STAFF = "the inspector is for staff: sign in with an account whose role is 'staff'"
ERROR_NOT_AUTHORIZED = "wamp.error.not_authorized"


def is_inspector_uri(uri: str) -> bool:
    return uri.startswith(PREFIX)


def require_staff(details: CallDetails | None) -> None:
    """Refuse a caller whose role the router says is not staff (checked server side)."""
    if details is None or details.caller_authrole != STAFF:
        raise ApplicationError(ERROR_NOT_AUTHORIZED, NOT_STAFF)


Procedure = Callable[..., Any]


class Inspector:
    """The inspector's procedures, registered with the topics service's session."""

    def __init__(self) -> None:
        self.procedures: dict[str, Procedure] = {}

    def add_procedure(self, name: str, procedure: Procedure) -> None:
        """Serve ``procedure`` as ``inspect.<name>``; it is called with ``details=``."""
        uri = PREFIX + name
        if uri in self.procedures:
            raise ValueError(f"inspector procedure '{uri}' is declared twice")
        self.procedures[uri] = procedure

    def procedure(self, name: str) -> Callable[[Procedure], Procedure]:
        def decorate(procedure: Procedure) -> Procedure:
            self.add_procedure(name, procedure)
            return procedure

        return decorate


def staff_only(procedure: Procedure) -> Procedure:
    """``procedure`` as registered: the caller's role checked before it runs."""

    async def checked(*args: Any, details: CallDetails | None = None, **kwargs: Any) -> Any:
        require_staff(details)
        answer = procedure(*args, details=details, **kwargs)
        return await answer if inspect.isawaitable(answer) else answer

    checked.__name__ = getattr(procedure, "__name__", "inspector_procedure")
    return checked
