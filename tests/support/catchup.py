"""A subscriber that never misses: live events in seq order, gaps filled from GET /events.

This is the client side of Sandbar's delivery guarantee, as a browser would do it:
drop what it has seen (seq <= last), deliver the next one, and on a gap or a
reconnect fetch what it missed from the API before going on.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import requests

from tests.support.wamp import Subscriber


class CatchUpSubscriber(Subscriber):
    def __init__(
        self, url: str | Sequence[str], topic: str, api_url: str, ticket: str | None = None
    ) -> None:
        super().__init__(url, [topic], ticket=ticket)
        self.topic, self.api_url = topic, api_url
        self.raw: list[int] = []  # seq of every live event, as it came off the wire
        self.delivered: list[int] = []  # what the application sees: in order, once each
        self.fetched = 0  # events recovered by catch-up
        self._held: dict[int, Any] = {}
        self._gate = threading.Lock()
        self._catching_up: asyncio.Task[None] | None = None

    @property
    def last(self) -> int:
        return self.delivered[-1] if self.delivered else 0

    async def _on_join(self, session: Any, details: Any) -> None:
        await super()._on_join(session, details)
        self._schedule_catch_up()  # whatever happened while we were away

    def _collector(self, topic: str) -> Any:
        keep = super()._collector(topic)

        def on_event(*args: Any, **kwargs: Any) -> None:
            keep(*args, **kwargs)
            seq = int(kwargs["seq"])
            with self._gate:
                self.raw.append(seq)
                self._offer(seq)
            if seq > self.last + 1:
                self._schedule_catch_up()

        return on_event

    def _offer(self, seq: int) -> None:
        if seq <= self.last:
            return  # seen already
        self._held[seq] = True
        while self.last + 1 in self._held:
            self._held.pop(self.last + 1)
            self.delivered.append(self.last + 1)

    def _schedule_catch_up(self) -> None:
        if self._catching_up is None or self._catching_up.done():
            self._catching_up = asyncio.ensure_future(self._catch_up())

    async def _catch_up(self) -> None:
        while True:
            with self._gate:
                after = self.last
            page = await asyncio.to_thread(self._fetch, after)
            with self._gate:
                for event in page["events"]:
                    if event["seq"] > self.last:
                        self.fetched += 1
                    self._offer(int(event["seq"]))
            if not page["more"]:
                return

    def _fetch(self, after: int) -> dict[str, Any]:
        params: dict[str, str | int] = {"topic": self.topic, "after": after, "limit": 500}
        response = requests.get(f"{self.api_url}/events", params=params, timeout=10)
        response.raise_for_status()
        return dict(response.json())

    def counts(self) -> dict[str, int]:
        with self._gate:
            return {
                "received_live": len(self.raw),
                "wire_duplicates": len(self.raw) - len(set(self.raw)),
                "recovered_by_catch_up": self.fetched,
                "delivered": len(self.delivered),
            }
