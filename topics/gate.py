"""Who may connect (the dynamic authenticator), how fast a session may ask, how much it may hold."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from autobahn.wamp.exception import ApplicationError

from sandbar.session_proof import sign

if TYPE_CHECKING:
    from topics.metrics import TopicsMetrics

#: WAMP roles the router knows (see .crossbar/config.yaml); any other user role maps to "user"
USER_ROLES = ("user", "staff")
#: the API's answer to whoami says until when the token is good (unix seconds)
EXPIRES_HEADER = "Sandbar-Token-Expires"


class Authenticator:
    """Checks a browser's token with the API (``GET /auth/whoami``), the authority on tokens."""

    def __init__(
        self,
        api_url: str,
        timeout: float = 5.0,
        metrics: TopicsMetrics | None = None,
        proof_secret: str | None = None,
    ) -> None:
        self.api_url, self.timeout = api_url.rstrip("/"), timeout
        self.metrics = metrics
        self.proof_secret = proof_secret  # signs each session's toOthers proof

    async def authenticate(
        self, realm: str, authid: str, details: dict[str, Any]
    ) -> dict[str, Any]:
        ticket = details.get("ticket")
        if not isinstance(ticket, str) or not ticket:
            self._counted("missing")
            raise ApplicationError("sandbar.error.invalid_token", "send your token as the ticket")
        started = time.perf_counter()
        status, body, expires = await asyncio.to_thread(self._whoami, ticket)
        self._counted(_RESULTS.get(status, "unavailable"), time.perf_counter() - started)
        if status == 200:
            role = body.get("role") if body.get("role") in USER_ROLES else "user"
            extra = dict(body.get("extra") or {})
            if expires is not None:
                extra["expires_at"] = expires  # any replica can end the session then
            session = details.get("session")
            if self.proof_secret and isinstance(session, int):  # for toOthers (REST header)
                extra["session_proof"] = sign(self.proof_secret, session, body["user"])
            return {"authid": body["user"], "role": role, "extra": extra}
        if status == 401:
            error = body.get("error", {})
            raise ApplicationError(
                f"sandbar.error.{error.get('code', 'invalid_token')}",
                error.get("message", "this token is not valid; sign in again"),
            )
        raise ApplicationError(
            "sandbar.error.auth_unavailable",
            "signing in is not possible right now; try again shortly",
        )

    def _counted(self, result: str, seconds: float | None = None) -> None:
        if self.metrics is not None:
            self.metrics.token_checks.labels(result).inc()
            if seconds is not None:
                self.metrics.token_check_seconds.observe(seconds)

    def _whoami(self, token: str) -> tuple[int, dict[str, Any], float | None]:
        """Status, body and the token's expiry (None if the API does not say)."""
        request = urllib.request.Request(
            f"{self.api_url}/auth/whoami", headers={"Authorization": f"Bearer {token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = json.loads(response.read())
                return response.status, body, _seconds(response.headers.get(EXPIRES_HEADER))
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read()), None
            except ValueError:
                return exc.code, {}, None
        except (OSError, ValueError):
            return 0, {}, None


_RESULTS = {200: "ok", 401: "invalid"}  # anything else: the API could not say


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


@dataclass
class RateLimiter:
    """A token bucket per session: ``rate`` messages a second, bursts up to ``burst``."""

    rate: float
    burst: int
    _buckets: dict[int, tuple[float, float]] = field(default_factory=dict)

    def allow(self, session_id: int, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(session_id, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1:
            self._buckets[session_id] = (tokens, now)
            return False
        self._buckets[session_id] = (tokens - 1, now)
        return True

    def forget(self, session_id: int) -> None:
        self._buckets.pop(session_id, None)


class SubscriptionCount:
    """The subscriptions each session holds, as (uri, match), so one session cannot hold
    without bound. Learnt from this replica's own grants (at once) and from the router's
    meta events (every replica's grants, a moment later)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[int, set[tuple[str, str]]] = {}

    def refuses(self, session_id: int, uri: str, match: str) -> bool:
        """Whether a new subscription to ``uri`` would exceed the limit (re-subscribing never does)."""
        held = self._held.get(session_id, set())
        return (uri, match) not in held and len(held) >= self.limit

    def add(self, session_id: int, uri: str, match: str) -> None:
        self._held.setdefault(session_id, set()).add((uri, match))

    def discard(self, session_id: int, uri: str, match: str) -> None:
        self._held.get(session_id, set()).discard((uri, match))

    def forget(self, session_id: int) -> None:
        self._held.pop(session_id, None)
