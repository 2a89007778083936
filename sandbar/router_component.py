"""Components that run inside the Crossbar router worker (``components:`` in
``.crossbar/config.yaml``): the way to run code in the router's own process."""

from __future__ import annotations

import os
import sys
from typing import Any, cast

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.types import ComponentConfig
from pydantic import Field

from sandbar.config import StrictModel, validate_config
from sandbar.heap import freeze_startup_heap
from sandbar.lifetime import die_with_parent
from sandbar.nesting import DEFAULT_MAX_DEPTH
from sandbar.router_fastpath import send_without_log_arguments
from sandbar.router_guard import (
    bound_recursion,
    hide_router_details,
    limit_nesting,
    refuse_lone_surrogates,
)
from sandbar.router_idle import (
    DEFAULT_SESSIONLESS_TIMEOUT,
    SessionlessTimeout,
    close_sessionless,
)
from sandbar.router_metrics import (
    count_serializer_resets,
    metrics_resource,
    metrics_settings,
    registry_for,
)
from sandbar.router_retained import bound_retained_events
from sandbar.secrets import SECRET_VAR


class HeapKeeper(ApplicationSession):
    """Freezes the router worker's start-up heap (sandbar/heap.py) once the realm is up,
    and has the worker die with the router's controller (sandbar/lifetime.py)."""

    def onJoin(self, details: Any) -> None:
        # Crossbar's worker leaves when its pipe to the controller closes, but not while
        # its reactor is blocked: the kernel ends it with a SIGKILLed controller.
        die_with_parent()
        frozen = freeze_startup_heap()
        self.log.info("froze {frozen} start-up objects out of the collector's reach", frozen=frozen)


class GuardSettings(StrictModel):
    """The ``extra`` of the RouterGuard component."""

    max_depth: int = Field(DEFAULT_MAX_DEPTH, ge=8, le=500)
    recursion_limit: int = Field(1000, ge=500, le=10_000)
    #: seconds a browser connection may stay open without a WAMP session; 0: forever
    sessionless_timeout: SessionlessTimeout = DEFAULT_SESSIONLESS_TIMEOUT


def _settings(extra: dict[str, Any]) -> GuardSettings:
    ours = {key: value for key, value in extra.items() if key != "cbdir"}  # Crossbar adds it
    return validate_config(GuardSettings, ours, source="RouterGuard extra")


def _install(limits: GuardSettings) -> None:
    limit_nesting(limits.max_depth)
    refuse_lone_surrogates()
    bound_recursion(limits.recursion_limit)
    close_sessionless(limits.sessionless_timeout)
    send_without_log_arguments()  # ~13 % of a fan-out's CPU (sandbar/router_fastpath.py)
    # the backend secret Crossbar's ticket principals use, and the topics service's proofs
    hide_router_details(proof_secret=os.environ.get(SECRET_VAR))


class RouterGuard(ApplicationSession):
    """Installs sandbar/router_guard.py's limits and sandbar/router_retained.py's bound in
    this worker. Crossbar starts the
    components before the transports, so no message is decoded before they hold."""

    @classmethod
    def check_config(cls, personality: Any, extra: dict[str, Any]) -> None:
        _settings(extra)  # a bad key or value stops the router at start, naming it

    def __init__(self, config: ComponentConfig | None = None) -> None:
        super().__init__(config)
        self._limits = _settings(dict(config.extra or {}) if config else {})
        self._apply()

    def _apply(self) -> None:
        _install(self._limits)
        bound_retained_events()  # the router's broker only: proxies have none

    def onJoin(self, details: Any) -> None:
        self._apply()  # again, in case something imported since raised the limit
        self.log.info(
            "router guard: messages nested over {depth} levels or with lone surrogates "
            "refused, recursion limit "
            "{recursion}, router details left out of WELCOME, connections without a session "
            "closed after {sessionless:g} s (0: never)",
            depth=self._limits.max_depth,
            sessionless=self._limits.sessionless_timeout,
            recursion=sys.getrecursionlimit(),
        )


class RouterMetrics(ApplicationSession):
    """Serves the router's Prometheus metrics (sandbar/router_metrics.py) from this worker,
    read from Crossbar's own counters; nothing is served when the port is 0."""

    @classmethod
    def check_config(cls, personality: Any, extra: dict[str, Any]) -> None:
        metrics_settings(extra)

    def __init__(self, config: ComponentConfig | None = None) -> None:
        super().__init__(config)
        self._settings = metrics_settings(dict(config.extra or {}) if config else {})
        if self._settings.port:
            count_serializer_resets()  # before any transport listens: no reset goes uncounted

    def onJoin(self, details: Any) -> None:
        if not self._settings.port:
            return
        from twisted.internet import reactor
        from twisted.internet.error import CannotListenError
        from twisted.web.server import Site

        # this embedded session's transport is its RouterApplicationSession
        router = cast(Any, self._transport)._router
        site = Site(metrics_resource(registry_for(router)))
        site.noisy = False
        site.log = lambda request: None  # type: ignore[method-assign]  # no line per scrape
        host, port = self._settings.host, self._settings.port
        try:
            cast(Any, reactor).listenTCP(port, site, interface=host)
        except CannotListenError as exc:
            self.log.error(
                "router: cannot serve metrics on {host}:{port} ({why}); running without them: "
                "choose a free port with --metrics-port or SANDBAR_ROUTER_METRICS_PORT",
                host=host,
                port=port,
                why=exc.socketError,
            )
            return
        self.log.info("router metrics on {url}", url=self._settings.url)


def ProxyGuard(extra: dict[str, Any]) -> Any:
    """The RouterGuard's limits in a proxy worker, which decodes the browsers' messages.

    Crossbar's ``resource`` web service calls this with its ``extra`` while it builds the
    proxy's web root, before the proxy listens (sandbar/router_proxies.py). The proxy also
    dies with the router's controller, as the router worker does, and passes the router's
    reason on when it ends a session (sandbar/proxy_session.py). Returns the resource for
    its path: a plain 404."""
    from twisted.web.resource import NoResource

    from sandbar.proxy_session import forward_router_goodbye

    _install(_settings(dict(extra)))
    forward_router_goodbye()
    die_with_parent()
    return NoResource()
