"""Processing after the answer (``hub mllp`` without a queue) waits while intake is busy: the stored ids
are handed to the processing child when the commits pause, or at the latest ``busy_hold_s`` after the
first of them, so a feed that never pauses is still processed.

The processing child is replaced by a recorder of the hand-overs; commits are simulated by ``submit``
calls a few milliseconds apart (the listener calls it after each commit).
"""

from __future__ import annotations

import threading
import time

from hub.pipeline import dispatch_buffer
from hub.pipeline.dispatch_buffer import BufferedDispatcher
from tests.support.waiting import wait_for


class Recorder:
    """What the processing child was given, and when."""

    name = "pool"
    write_lock = None

    def __init__(self) -> None:
        self.batches: list[tuple[float, list[int]]] = []
        self.lock = threading.Lock()

    def submit(self, ids: list[int]) -> None:
        with self.lock:
            self.batches.append((time.monotonic(), list(ids)))

    def handed(self) -> list[int]:
        with self.lock:
            return [i for _, ids in self.batches for i in ids]


def feed(dispatcher: BufferedDispatcher, ids: range, every_s: float) -> tuple[float, float]:
    """One id per simulated commit, ``every_s`` apart; the times of the first and the last."""
    first = time.monotonic()
    for i in ids:
        dispatcher.submit([i])
        time.sleep(every_s)
    return first, time.monotonic()


def test_a_burst_is_handed_over_once_when_intake_pauses_not_while_it_lasts() -> None:
    child = Recorder()
    # a batch of 5 and a 20 ms delay would hand over every few commits without the hold
    dispatcher = BufferedDispatcher(child, delay_s=0.02, batch=5, busy_hold_s=30.0)
    submitted = []
    for i in range(60):  # ~0.3 s of commits, 5 ms apart
        submitted.append(time.monotonic())
        dispatcher.submit([i])
        time.sleep(0.005)
    assert wait_for(lambda: len(child.handed()) == 60, 5.0, every=0.005)
    assert child.handed() == list(range(60))  # all, in order, once
    # Nothing is handed over while the commits keep coming. A loaded machine may stall the feeding thread for
    # longer than QUIET_S: that gap is a pause like any other, and a hand-over within it is right.
    quiet = dispatch_buffer.QUIET_S * 0.9
    gaps = [(a, b) for a, b in zip(submitted, submitted[1:], strict=False) if b - a >= quiet]
    for at, ids in child.batches:
        if at < submitted[-1]:
            assert any(a + quiet <= at <= b + 0.05 for a, b in gaps), f"{ids} handed over while commits kept coming"
    after = [at for at, _ in child.batches if at >= submitted[-1]]
    assert after and after[0] - submitted[-1] >= quiet  # the last ones after the pause, not before


def test_a_feed_that_never_pauses_is_still_processed_every_busy_hold() -> None:
    child = Recorder()
    dispatcher = BufferedDispatcher(child, delay_s=0.02, batch=5, busy_hold_s=0.25)
    first, last = feed(dispatcher, range(200), every_s=0.005)  # ~1 s or more of commits, no pause
    assert child.batches, "nothing was processed during a busy second"
    during = [at for at, _ in child.batches if at < last]
    assert len(during) >= 2  # handed over while the feed went on, about every quarter of a second
    assert during[0] - first < 0.25 + 0.5  # the first no later than the hold (with room for a slow machine)
    assert wait_for(lambda: len(child.handed()) == 200, 5.0, every=0.005)
    assert sorted(child.handed()) == list(range(200))  # none lost, none twice


def test_without_a_hold_ids_go_as_batches_fill() -> None:
    child = Recorder()
    dispatcher = BufferedDispatcher(child, delay_s=5.0, batch=5)  # the queue's buffer (HTTP, rq): no hold
    feed(dispatcher, range(20), every_s=0.005)
    assert wait_for(lambda: len(child.handed()) == 20, 3.0, every=0.005)  # full batches go at once, not after 5 s


def test_flush_hands_over_what_is_held() -> None:
    child = Recorder()
    dispatcher = BufferedDispatcher(child, delay_s=0.02, batch=5, busy_hold_s=30.0)
    feed(dispatcher, range(10), every_s=0.001)
    dispatcher.flush()  # the listener stops: nothing stays behind in memory
    assert sorted(child.handed()) == list(range(10))
