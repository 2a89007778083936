"""Per-topic ordering and duplicate suppression for sequenced events.

The API numbers events per topic in commit order (``seq``). Events from several
API workers, and resends after a crash, reach the bridge in any order; the
sequencer releases each topic's events strictly in ``seq`` order and drops what
was published already, so subscribers see every topic once, in commit order.

Where to start counting a topic it has not seen (after a bridge restart) comes
from the router: sequenced events are published with ``retain``, so the router
keeps the last one per topic and the bridge reads its ``seq`` (its *baseline*).
Without one (a fresh router), the lowest ``seq`` on offer (the sender's
``floor``: the lowest it has not had acknowledged) is the start. A gap that
never fills is given up after ``gap_timeout`` so a topic cannot stall for ever.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.routes import Publication


@dataclass
class SequencerStats:
    held: int = 0
    late: int = 0
    duplicates: int = 0
    gaps_skipped: int = 0


@dataclass
class _Topic:
    expected: int | None  # None until the baseline is known
    floor: int
    epoch: str | None
    held: dict[int, Publication] = field(default_factory=dict)
    held_since: float | None = None


class Sequencer:
    def __init__(
        self,
        gap_timeout: float = 15.0,
        remember: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gap_timeout = gap_timeout
        self.stats = SequencerStats()
        self._topics: OrderedDict[str, _Topic] = OrderedDict()
        self._published: OrderedDict[str, None] = OrderedDict()  # recent event ids
        self._pending: set[str] = set()  # accepted, not yet published
        self._remember = remember
        self._clock = clock

    def was_published(self, event_id: str) -> bool:
        return event_id in self._published

    def admit(self, pub: Publication) -> list[Publication]:
        """Take one event; return those now ready to publish, in order."""
        envelope = pub.envelope
        if envelope.id in self._pending or envelope.id in self._published:
            self.stats.duplicates += 1
            return []
        self._pending.add(envelope.id)
        if envelope.seq is None:
            return [pub]
        topic = self._topics.get(pub.topic)
        floor = envelope.floor if envelope.floor is not None else envelope.seq
        released: list[Publication] = []
        if topic is not None and topic.epoch != envelope.epoch:
            # Numbered by another outbox (the database was replaced): start the topic afresh,
            # after letting out what was held under the old numbering.
            released = [topic.held[seq] for seq in sorted(topic.held)]
            del self._topics[pub.topic]
            topic = None
        if topic is None:
            topic = self._topics[pub.topic] = _Topic(None, floor, envelope.epoch)
            self._forget_old_topics()
        self._topics.move_to_end(pub.topic)
        topic.floor = min(topic.floor, floor)
        if topic.expected is not None and envelope.seq < topic.expected:
            self.stats.late += 1  # its gap was given up on: better late than never
            return [pub]
        topic.held[envelope.seq] = pub
        if topic.held_since is None:
            topic.held_since = self._clock()
        return released + self._release(topic)

    def needs_baseline(self, uri: str) -> bool:
        topic = self._topics.get(uri)
        return topic is not None and topic.expected is None

    def set_baseline(
        self, uri: str, last_published: int | None, epoch: str | None = None
    ) -> tuple[list[Publication], list[Publication]]:
        """The last (seq, epoch) the router saw on ``uri`` (None: it knows none). Returns the
        events now ready, and the held ones that turn out to be published already (to ack)."""
        topic = self._topics.get(uri)
        if topic is None or topic.expected is not None:
            return [], []
        if last_published is not None and epoch == topic.epoch:
            topic.expected = last_published + 1
        else:
            topic.expected = min([topic.floor, *topic.held])
        done = [topic.held.pop(seq) for seq in sorted(topic.held) if seq < topic.expected]
        for pub in done:
            self.stats.duplicates += 1
            self.published(pub.envelope.id)
        return self._release(topic), done

    def expire(self) -> list[Publication]:
        """Give up on gaps older than ``gap_timeout``; return what that releases."""
        ready: list[Publication] = []
        now = self._clock()
        for topic in self._topics.values():
            if (
                topic.expected is not None
                and topic.held_since is not None
                and now - topic.held_since >= self.gap_timeout
            ):
                first = min(topic.held)
                self.stats.gaps_skipped += first - topic.expected
                topic.expected = first
                ready.extend(self._release(topic))
        return ready

    def published(self, event_id: str) -> None:
        """The router acknowledged it: remember the id to drop resends."""
        self._pending.discard(event_id)
        self._published[event_id] = None
        while len(self._published) > self._remember:
            self._published.popitem(last=False)

    def abandoned(self, event_id: str) -> None:
        """Refused by the router: a resend may try again."""
        self._pending.discard(event_id)

    def _release(self, topic: _Topic) -> list[Publication]:
        ready = []
        while topic.expected is not None and topic.expected in topic.held:
            ready.append(topic.held.pop(topic.expected))
            topic.expected += 1
        if ready or not topic.held:
            topic.held_since = self._clock() if topic.held else None
        self.stats.held = sum(len(t.held) for t in self._topics.values())
        return ready

    def _forget_old_topics(self) -> None:
        """Bound memory: drop the least recently used topics that hold nothing."""
        while len(self._topics) > self._remember:
            for uri, topic in self._topics.items():
                if not topic.held:
                    del self._topics[uri]
                    break
            else:
                return
