"""Who may connect (the dynamic authenticator) and how fast a session may send."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from autobahn.wamp.exception import ApplicationError

#: WAMP roles the router knows (see .crossbar/config.yaml); any other user role maps to "user"
USER_ROLES = ("user", "staff")


class Authenticator:
    """Checks a browser's token with the API (``GET /auth/whoami``), the authority on tokens."""

    def __init__(self, api_url: str, timeout: float = 5.0) -> None:
        self.api_url, self.timeout = api_url.rstrip("/"), timeout

    async def authenticate(
        self, realm: str, authid: str, details: dict[str, Any]
    ) -> dict[str, Any]:
        ticket = details.get("ticket")
        if not isinstance(ticket, str) or not ticket:
            raise ApplicationError("sandbar.error.invalid_token", "send your token as the ticket")
        status, body = await asyncio.to_thread(self._whoami, ticket)
        if status == 200:
            role = body.get("role") if body.get("role") in USER_ROLES else "user"
            return {"authid": body["user"], "role": role, "extra": body.get("extra", {})}
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

    def _whoami(self, token: str) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f"{self.api_url}/auth/whoami", headers={"Authorization": f"Bearer {token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read())
            except ValueError:
                return exc.code, {}
        except (OSError, ValueError):
            return 0, {}


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
