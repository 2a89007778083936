"""Decisions for the router's dynamic authorizer: who may subscribe, publish and call what.

Browsers get nothing that no topic grants: URIs matching no declared topic,
``sandbar.*`` and ``wamp.*`` procedures, registering anything, and publishing to
topics fed by the bridge are all denied. No decision is cached at the router:
most depend on the session, and a cached denial would outlive a redeploy.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from topics.handlers import HandlerFailed, Reject, call_hook
from topics.registry import Topic, TopicRouter
from topics.session import Runtime, Session, SessionInfo

log = logging.getLogger("sandbar.topics.authorizer")

EXPLAIN_PROCEDURE = "explain.subscribe"


@dataclass(frozen=True)
class Decision:
    allow: bool
    reason: str | None = None
    disclose: bool = False

    def for_router(self) -> dict[str, Any]:
        return {"allow": self.allow, "disclose": self.disclose, "cache": False}


ALLOW = Decision(True)


def deny(reason: str) -> Decision:
    return Decision(False, reason)


class Authorizer:
    def __init__(
        self,
        topics: TopicRouter,
        runtime: Runtime | None = None,
        remember: int = 10_000,
        *,
        allow_anonymous: bool = True,
    ) -> None:
        self.topics = topics
        self.runtime = runtime
        self.allow_anonymous = allow_anonymous
        self._denials: OrderedDict[tuple[int, str], str] = OrderedDict()
        self._remember = remember

    async def authorize(
        self, session: SessionInfo, uri: str, action: str, options: dict[str, Any] | None = None
    ) -> Decision:
        options = options or {}
        if not self.allow_anonymous and session.authmethod == "anonymous":
            return deny("sign in first: this site does not serve anonymous sessions")
        if action == "subscribe":
            decision = await self._subscribe(session, uri, options.get("match") or "exact")
            if not decision.allow:
                self._remember_denial(session.id, uri, decision.reason or "denied")
            return decision
        if action == "publish":
            return await self._publish(session, uri)
        if action == "call":
            return self._call(uri)
        return deny(f"clients may not {action} '{uri}'")

    def explain(self, session_id: int, uri: str) -> str | None:
        """Why ``uri`` was last denied to this session, if this replica denied it."""
        return self._denials.get((session_id, uri))

    async def _subscribe(self, session: SessionInfo, uri: str, match: str) -> Decision:
        found = self.topics.match(uri, match)  # type: ignore[arg-type]
        if found is None:
            if match != "exact":
                return deny(
                    f"{match} subscriptions to '{uri}' are not allowed; subscribe to a topic"
                )
            return deny(f"no topic '{uri}'")
        topic, params = found
        hook = topic.hook("on_subscribe")
        if hook is None:
            return ALLOW
        return await self._ask(topic, hook, session, uri, params, "subscription refused")

    async def _publish(self, session: SessionInfo, uri: str) -> Decision:
        found = self.topics.match(uri)
        if found is None:
            return deny(f"no topic '{uri}'")
        topic, params = found
        if topic.handles_publish:
            return deny(f"send to '{uri}' with session.call('{uri}', [payload]), not publish")
        if not topic.client_publish:
            return deny(f"clients may not publish to '{uri}'")
        hook = topic.hook("can_publish")
        if hook is None:
            return ALLOW
        return await self._ask(topic, hook, session, uri, params, "publish refused")

    def _call(self, uri: str) -> Decision:
        if uri == EXPLAIN_PROCEDURE:
            return Decision(True, disclose=True)
        found = self.topics.match(uri)
        if found is not None and found[0].handles_publish:
            return Decision(True, disclose=True)  # the handler needs to know who is calling
        return deny(f"no procedure '{uri}' for clients")

    async def _ask(
        self,
        topic: Topic,
        hook: Any,
        info: SessionInfo,
        uri: str,
        params: dict[str, Any],
        refused: str,
    ) -> Decision:
        session = Session.bind(info, uri, self.runtime)
        where = f"{hook.__name__} of topic '{topic.name}' for '{uri}' (session {info.id}, authid {info.authid})"
        try:
            answer = await call_hook(hook, session, where=where, **params)
        except Reject as exc:
            return deny(exc.reason)
        except HandlerFailed:
            return deny("internal error in the topic (logged)")
        return ALLOW if answer is None or answer is True else deny(refused)

    def _remember_denial(self, session_id: int, uri: str, reason: str) -> None:
        self._denials[(session_id, uri)] = reason
        self._denials.move_to_end((session_id, uri))
        while len(self._denials) > self._remember:
            self._denials.popitem(last=False)
