"""A fix installed in each Crossbar proxy worker (by ``ProxyGuard``, sandbar/router_component.py).

When the router ends a session (``wamp.session.kill``: the topics service does so on
sign-out, account disabled, token expired), it sends the proxy's backend session a GOODBYE
with the reason. Crossbar's proxy drops that message and tells the browser only that
the transport went away, so the page could not say why it was signed out. The backend
session now keeps the router's reason and hands it to the browser in its own GOODBYE.
"""

from __future__ import annotations

import functools
from typing import Any

from autobahn.wamp import message


def forward_router_goodbye() -> None:
    """Have every proxy backend session pass the router's GOODBYE reason to its client."""
    from crossbar.worker.proxy import ProxyBackendSession

    on_message = getattr(
        ProxyBackendSession.onMessage, "__wrapped__", ProxyBackendSession.onMessage
    )
    on_close = getattr(ProxyBackendSession.onClose, "__wrapped__", ProxyBackendSession.onClose)

    @functools.wraps(on_message)
    def onMessage(self: Any, msg: Any) -> None:
        if isinstance(msg, message.Goodbye):
            self._sandbar_goodbye = message.Goodbye(reason=msg.reason, message=msg.message)
        on_message(self, msg)

    @functools.wraps(on_close)
    def onClose(self: Any, wasClean: bool) -> None:
        goodbye = getattr(self, "_sandbar_goodbye", None)
        frontend = self._frontend
        if goodbye is not None and frontend is not None and frontend.transport is not None:
            frontend.transport.send(goodbye)
            self._frontend = None  # Crossbar's onClose would send its own, reasonless one
        on_close(self, wasClean)

    ProxyBackendSession.onMessage = onMessage  # type: ignore[method-assign]
    ProxyBackendSession.onClose = onClose  # type: ignore[method-assign]
