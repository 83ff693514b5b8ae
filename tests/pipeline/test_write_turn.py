"""``hub ingest --jobs``: on SQLite the pool's processes take turns to write by one lock.

A writer waiting for another wakes when the lock is released (not when SQLite's busy handler next
polls), and a lock never released (its holder died) delays a write by ``WRITE_TURN_WAIT`` at most.
"""

import threading
import time

from hub.pipeline import process
from hub.pipeline.dispatch import PoolDispatcher
from hub.pipeline.process import write_turn


def test_a_pool_takes_turns_by_a_lock_on_sqlite_only(runtime, database_url):
    pool = PoolDispatcher(runtime, 2)
    try:
        assert (pool.write_lock is not None) == database_url.startswith("sqlite")
    finally:
        pool.close()


def test_a_writer_goes_as_soon_as_the_one_before_it_is_done():
    lock = threading.Lock()
    lock.acquire()
    released_at: list[float] = []

    def other_writer() -> None:
        time.sleep(0.2)
        released_at.append(time.monotonic())
        lock.release()

    threading.Thread(target=other_writer).start()
    with write_turn(lock):
        entered = time.monotonic()
        assert lock.locked()  # held for this transaction
    assert released_at and entered >= released_at[0]
    assert not lock.locked()  # and given back


def test_a_lock_never_released_delays_a_write_but_does_not_stop_it(monkeypatch):
    monkeypatch.setattr(process, "WRITE_TURN_WAIT", 0.3)
    lock = threading.Lock()
    lock.acquire()  # its holder died holding it
    start = time.monotonic()
    with write_turn(lock):
        waited = time.monotonic() - start
    assert 0.25 <= waited < 5
    assert lock.locked()  # not released by a writer that never had it


def test_no_lock_no_wait():
    with write_turn(None):
        pass
