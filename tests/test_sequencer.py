"""The bridge's sequencer as a pure function: order per topic, duplicates dropped."""

from __future__ import annotations

from bridge.envelope import Envelope
from bridge.routes import Publication
from bridge.sequencer import Sequencer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def pub(seq: int, floor: int | None = None, topic: str = "t") -> Publication:
    envelope = Envelope(
        name="e", payload={}, id=f"{topic}-{seq}", topic=topic, seq=seq, floor=floor
    )
    return Publication(envelope, topic)


def seqs(ready: list[Publication]) -> list[int | None]:
    return [p.envelope.seq for p in ready]


def test_out_of_order_arrivals_are_released_in_order():
    sequencer = Sequencer()
    assert sequencer.admit(pub(3, floor=1)) == []
    assert sequencer.needs_baseline("t")
    ready, done = sequencer.set_baseline("t", None)  # fresh router: start at the floor
    assert (seqs(ready), done) == ([], [])
    assert seqs(sequencer.admit(pub(2, floor=1))) == []
    assert seqs(sequencer.admit(pub(1, floor=1))) == [1, 2, 3]
    assert seqs(sequencer.admit(pub(4, floor=4))) == [4]


def test_baseline_from_the_router_drops_what_a_crashed_bridge_already_published():
    sequencer = Sequencer()
    sequencer.admit(pub(5, floor=5))
    sequencer.admit(pub(6, floor=5))
    sequencer.admit(pub(7, floor=5))
    ready, done = sequencer.set_baseline("t", 6)  # the router saw up to 6
    assert seqs(ready) == [7]
    assert seqs(done) == [5, 6]
    assert sequencer.was_published("t-5")
    assert sequencer.admit(pub(5, floor=5)) == []  # a later resend is a duplicate
    assert sequencer.stats.duplicates == 3


def test_a_gap_that_never_fills_is_given_up_after_the_timeout():
    clock = Clock()
    sequencer = Sequencer(gap_timeout=10, clock=clock)
    sequencer.admit(pub(1))
    sequencer.set_baseline("t", None)
    assert seqs(sequencer.admit(pub(3))) == []
    clock.now = 9.9
    assert sequencer.expire() == []
    clock.now = 10.0
    assert seqs(sequencer.expire()) == [3]
    assert sequencer.stats.gaps_skipped == 1
    assert seqs(sequencer.admit(pub(2))) == [2]  # late, but never published: out it goes
    assert sequencer.stats.late == 1


def test_unsequenced_events_pass_straight_through_and_topics_are_independent():
    sequencer = Sequencer()
    plain = Publication(Envelope(name="e", payload={}), "t")
    assert sequencer.admit(plain) == [plain]
    sequencer.admit(pub(1, topic="a"))
    sequencer.set_baseline("a", None)
    sequencer.admit(pub(9, topic="b"))
    assert seqs(sequencer.set_baseline("b", 8)[0]) == [9]


def test_the_duplicate_window_keeps_the_newest_ids():
    """``publish.duplicate_window``: the newest ids are kept, the oldest forgotten."""
    sequencer = Sequencer(remember=2)
    for event_id in ("a", "b", "c"):
        sequencer.published(event_id)
    assert [sequencer.was_published(i) for i in "abc"] == [False, True, True]
