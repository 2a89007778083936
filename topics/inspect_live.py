"""The inspector's live view: services, sessions, topics and the tap, for staff only.

Served by the topics leader as ``inspect.*`` (registered through ``service.inspector``;
each call is checked for the staff role by the authorizer and again by ``staff_only``).
Everything comes from the router's meta API, asked by the service's backend session
(browsers never get ``wamp.*``), and from what the service already tracks; every answer
is bounded (``limit``, at most 1000) and every argument checked (topics/inspect_args.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallDetails

from topics.inspect_args import arguments, authid_of, invalid, limit_of
from topics.inspect_tap import Taps
from topics.session import SessionInfo

if TYPE_CHECKING:
    from sandbar.wamp import ApplicationSession
    from topics.service import TopicsService

#: how long one look at the bridge or the API may take before it is reported as an error
PROBE_SECONDS = 2.0
#: router lookups made at once for one answer
CONCURRENCY = 20
#: subscriptions whose URI one inspect.topics call may look up (the rest: next calls)
MAX_LOOKUPS = 2000
#: topics/service.py's (not imported: it imports this): every replica is a callee of the
#: first, the leader alone of the second
AUTHORIZE, LEADER = "sandbar.authorize", "sandbar.topics.leader"
STATS_PROCEDURE = "sandbar.bridge.stats"  # bridge/server.py's


class LiveInspector:
    """``inspect.services``, ``.sessions``, ``.topics``, ``.tap.start`` and ``.tap.stop``."""

    def __init__(self, service: TopicsService) -> None:
        self.service = service
        config = service.config
        self.taps = Taps(
            config.tap_rate,
            config.tap_burst,
            config.max_taps_per_session,
            config.max_taps,
            service.metrics,
        )
        add = service.inspector.add_procedure
        add("services", self.services)
        add("sessions", self.sessions)
        add("topics", self.topics)
        add("tap.start", self.tap_start)
        add("tap.stop", self.tap_stop)

    async def attach(self, session: ApplicationSession) -> None:
        """On each join: taps of an earlier router session are gone with it. (A session
        leaving ends its taps: the service's ``on_session_left`` calls ``session_left``.)"""
        self.taps.reset(session)

    async def session_left(self, session_id: int) -> None:
        await self.taps.session_left(session_id)

    def _wamp(self) -> ApplicationSession:
        wamp = self.service.wamp
        if wamp is None or not wamp.is_attached():
            raise ApplicationError("sandbar.error.unavailable", "not connected to the router")
        return wamp

    # -- inspect.services -----------------------------------------------------------

    async def services(self, *args: Any, details: CallDetails, **kwargs: Any) -> dict[str, Any]:
        """Router, topics replicas, bridge and API, each as it answers now::

        {"router": {"status", "sessions", "subscriptions": {match: n}, "registrations"},
         "topics": [{"session", "leader"}], "bridge": <sandbar.bridge.stats> or {"error"},
         "api": {"url", "status", "outbox": {"backlog", "oldest_age_s", ...}} or
         {"url", "error"}, "at": unix seconds}

        The API is asked ``GET /healthz`` (public: the service holds no staff token)."""
        arguments("inspect.services", args, kwargs, ())
        wamp = self._wamp()
        router, topics, bridge, api = await asyncio.gather(
            self._router(wamp), self._replicas(wamp), self._bridge(wamp), self._api()
        )
        return {"router": router, "topics": topics, "bridge": bridge, "api": api, "at": time.time()}

    async def _router(self, wamp: ApplicationSession) -> dict[str, Any]:
        subscriptions = await wamp.call("wamp.subscription.list") or {}
        registrations = await wamp.call("wamp.registration.list") or {}
        # the router does not list wildcard subscriptions (Crossbar's FIXME): this service
        # learnt them from wamp.subscription.on_create
        subscriptions["wildcard"] = self._wildcards()
        return {
            "status": "ok",
            "sessions": await wamp.call("wamp.session.count"),
            "subscriptions": {match: len(ids) for match, ids in subscriptions.items()},
            "registrations": {match: len(ids) for match, ids in registrations.items()},
        }

    def _wildcards(self) -> list[int]:
        known = self.service.subscriptions.items()
        return [sub_id for sub_id, (_, match) in known if match == "wildcard"]

    async def _replicas(self, wamp: ApplicationSession) -> list[dict[str, Any]]:
        replicas = await self._callees(wamp, AUTHORIZE)
        leaders = set(await self._callees(wamp, LEADER))
        return [{"session": s, "leader": s in leaders} for s in sorted(replicas)]

    async def _callees(self, wamp: ApplicationSession, procedure: str) -> list[int]:
        registration = await wamp.call("wamp.registration.lookup", procedure)
        if registration is None:
            return []
        return list(await wamp.call("wamp.registration.list_callees", registration) or [])

    async def _bridge(self, wamp: ApplicationSession) -> dict[str, Any]:
        try:
            stats = await asyncio.wait_for(wamp.call(STATS_PROCEDURE), PROBE_SECONDS)
        except TimeoutError:
            return {"error": f"{STATS_PROCEDURE} did not answer within {PROBE_SECONDS:g} s"}
        except ApplicationError as exc:  # no_such_procedure: no bridge connected
            return {"error": f"{exc.error}: {exc.args[0] if exc.args else ''}".rstrip(": ")}
        return dict(stats) if isinstance(stats, dict) else {"error": "unexpected answer"}

    async def _api(self) -> dict[str, Any]:
        url = self.service.config.api_url.rstrip("/")
        return {"url": url, **await asyncio.to_thread(_healthz, url)}

    # -- inspect.sessions -------------------------------------------------------------

    async def sessions(self, *args: Any, details: CallDetails, **kwargs: Any) -> list[Any]:
        """Sessions on the router, ``authid``'s only if given, at most ``limit`` (default
        200), ordered by session id: ``[{"session", "authid", "authrole", "transport":
        {"type", "peer"}, "since", "subscriptions": [uri, ...]}]``. Backend sessions
        (bridge, topics replicas, the router's own components) are listed too, role
        ``backend``. ``since``: when this replica saw it join (None: before it started)."""
        given = arguments("inspect.sessions", args, kwargs, ("authid", "limit"))
        authid, limit = authid_of(given.get("authid")), limit_of(given.get("limit"), 200)
        wamp = self._wamp()
        ids = sorted(await wamp.call("wamp.session.list") or [])
        gate = asyncio.Semaphore(CONCURRENCY)

        async def known(session_id: int) -> SessionInfo | None:
            async with gate:  # cached for most: the authorizer saw them join
                info = await self.service.sessions.get(session_id)
            if info.authrole is None or (authid is not None and info.authid != authid):
                return None  # gone meanwhile, or not the one asked for
            return info

        async def described(info: SessionInfo) -> dict[str, Any]:
            async with gate:
                return await self._session(wamp, info)

        found: list[SessionInfo] = []
        step = CONCURRENCY * 5
        for start in range(0, len(ids), step):  # stops once ``limit`` are found
            batch = await asyncio.gather(*map(known, ids[start : start + step]))
            found += [each for each in batch if each is not None]
            if len(found) >= limit:
                break
        return list(await asyncio.gather(*map(described, found[:limit])))

    async def _session(self, wamp: ApplicationSession, info: SessionInfo) -> dict[str, Any]:
        transport = info.transport or {}
        return {
            "session": info.id,
            "authid": info.authid,
            "authrole": info.authrole,
            "authmethod": info.authmethod,
            "transport": {
                "type": transport.get("channel_framing") or transport.get("channel_type"),
                "peer": transport.get("peer"),
            },
            "since": self.service.records.journal.connected_since(info.id),  # the journal's
            "subscriptions": await self._subscriptions_of(wamp, info.id),
        }

    async def _subscriptions_of(self, wamp: ApplicationSession, session_id: int) -> list[str]:
        try:
            listed = await wamp.call("wamp.subscription.list", session_id) or {}
        except ApplicationError:  # left meanwhile
            return []
        uris = []
        for sub_id in sorted(i for ids in listed.values() for i in ids):
            known = await self._subscription(wamp, sub_id)
            if known is not None:
                uris.append(known[0])
        return sorted(uris)

    async def _subscription(self, wamp: ApplicationSession, sub_id: int) -> tuple[str, str] | None:
        """(uri, match), as this service learnt it or as the router says; None for the
        router's protected ones (``wamp.*``, which a backend may not look up)."""
        known = self.service.subscriptions.get(sub_id)
        if known is not None:
            return known
        try:
            found = await wamp.call("wamp.subscription.get", sub_id)
        except ApplicationError:
            return None
        if not found:
            return None
        known = (str(found["uri"]), str(found["match"]))
        self.service.subscriptions[sub_id] = known
        return known

    # -- inspect.topics ---------------------------------------------------------------

    async def topics(self, *args: Any, details: CallDetails, **kwargs: Any) -> list[Any]:
        """Subscribed topics, by URI, at most ``limit`` (default 200): ``[{"uri", "match",
        "subscribers": n}]``, backend and inspector topics included. Wildcard subscriptions
        made before this replica started are missing (the router does not list them), and
        a replica that started after many subscriptions looks up at most MAX_LOOKUPS URIs
        it does not know yet per call."""
        given = arguments("inspect.topics", args, kwargs, ("limit",))
        limit = limit_of(given.get("limit"), 200)
        wamp = self._wamp()
        listed = await wamp.call("wamp.subscription.list") or {}
        ids = {i for match, each in listed.items() if match != "wildcard" for i in each}
        ids.update(self._wildcards())
        unknown = sorted(i for i in ids if i not in self.service.subscriptions)
        ids.difference_update(unknown[MAX_LOOKUPS:])  # learnt by later calls, a share each
        gate = asyncio.Semaphore(CONCURRENCY)

        async def described(sub_id: int) -> tuple[str, str, int] | None:
            async with gate:
                known = await self._subscription(wamp, sub_id)
                if known is None:
                    return None
                return (*known, sub_id)

        named = [each for each in await asyncio.gather(*map(described, ids)) if each]
        named.sort()
        answers = []
        for uri, match, sub_id in named[:limit]:
            count = await self._count(wamp, sub_id)
            if count is not None:
                answers.append({"uri": uri, "match": match, "subscribers": count})
        return answers

    async def _count(self, wamp: ApplicationSession, sub_id: int) -> int | None:
        try:
            return int(await wamp.call("wamp.subscription.count_subscribers", sub_id))
        except ApplicationError:  # deleted meanwhile
            return None

    # -- inspect.tap.* ------------------------------------------------------------------

    async def tap_start(self, *args: Any, details: CallDetails, **kwargs: Any) -> dict[str, Any]:
        """Start forwarding events on ``pattern`` to the caller, on ``inspect.tap``:
        ``{"tap", "pattern", "uri", "match", "rate", "burst", "topic", "caveat"}`` (see
        topics/inspect_tap.py for the records, the bounds and what a tap cannot see)."""
        given = arguments("inspect.tap.start", args, kwargs, ("pattern",))
        if "pattern" not in given:
            raise invalid("inspect.tap.start takes a pattern, e.g. 'articles' or 'chat.{channel}'")
        return await self.taps.start(self._wamp(), _caller(details), given["pattern"])

    async def tap_stop(self, *args: Any, details: CallDetails, **kwargs: Any) -> dict[str, Any]:
        """End the caller's tap ``tap`` (None: all of the caller's): ``{"stopped": n}``."""
        tap = arguments("inspect.tap.stop", args, kwargs, ("tap",)).get("tap")
        if tap is not None and (isinstance(tap, bool) or not isinstance(tap, int)):
            raise invalid("tap must be a tap id (from inspect.tap.start) or None for all")
        return {"stopped": await self.taps.stop(_caller(details), tap)}


def _caller(details: CallDetails) -> int:
    if not isinstance(details.caller, int):
        raise invalid("the caller is not disclosed; the inspector needs to know who asks")
    return details.caller


def _healthz(url: str) -> dict[str, Any]:
    """The API's ``GET /healthz``: its status and outbox backlog, or the error (blocking:
    run in a thread)."""
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=PROBE_SECONDS) as response:
            body = json.loads(response.read(65536))
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "error": f"GET /healthz answered {exc.code}"}
    except (OSError, ValueError) as exc:
        return {"error": f"GET /healthz failed: {exc}"}
    if not isinstance(body, dict):
        return {"error": "GET /healthz did not answer a JSON object"}
    return {"status": body.get("status"), "outbox": body.get("outbox")}


def add_tap_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """``sandbar-topics`` options for the tap's bounds (TopicsConfig's ``tap_*`` keys)."""
    options = (
        ("--tap-rate", "TAP_RATE", float, "50", "events forwarded a second per tap"),
        ("--tap-burst", "TAP_BURST", int, "100", "burst allowance of a tap"),
        ("--max-taps-per-session", "MAX_TAPS_PER_SESSION", int, "4", "taps per staff session"),
        ("--max-taps", "MAX_TAPS", int, "20", "taps of all sessions together"),
    )
    for flag, var, kind, default, what in options:
        parser.add_argument(
            flag,
            type=kind,
            default=env.get(f"SANDBAR_TOPICS_{var}", default),
            help=f"inspector: {what} (env SANDBAR_TOPICS_{var}; default: {default})",
        )


def tap_settings(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("tap_rate", "tap_burst", "max_taps_per_session", "max_taps")
    return {key: getattr(args, key) for key in keys}
