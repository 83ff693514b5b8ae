"""The advisory lock by which ``hub mllp`` and its processing child take turns at a SQLite store's write lock."""

from __future__ import annotations

import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from hub.store.write_lock import StoreWriteLock, store_write_lock

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""


def _holder(path: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def _end(holder: subprocess.Popen[str]) -> None:
    holder.kill()
    holder.wait()
    assert holder.stdout is not None
    holder.stdout.close()


def test_a_lock_held_elsewhere_is_given_up_after_the_timeout(tmp_path: Path) -> None:
    holder = _holder(tmp_path / "db-writer.lock")
    try:
        lock = StoreWriteLock(str(tmp_path / "db-writer.lock"))
        started = time.monotonic()
        assert lock.acquire(timeout=0.3) is False
        assert 0.25 <= time.monotonic() - started < 5
    finally:
        _end(holder)


def test_a_holder_killed_with_sigkill_lets_the_waiter_go_at_once(tmp_path: Path) -> None:
    holder = _holder(tmp_path / "db-writer.lock")
    lock = StoreWriteLock(str(tmp_path / "db-writer.lock"))
    threading.Timer(0.3, holder.send_signal, args=(signal.SIGKILL,)).start()
    started = time.monotonic()
    assert lock.acquire(timeout=10) is True  # the kernel released the dead holder's lock
    waited = time.monotonic() - started
    lock.release()
    _end(holder)
    assert 0.25 <= waited < 5


def test_threads_of_one_process_take_turns(tmp_path: Path) -> None:
    lock = StoreWriteLock(str(tmp_path / "db-writer.lock"))
    inside, overlaps = [0], [0]

    def work() -> None:
        for _ in range(50):
            assert lock.acquire(timeout=10)
            inside[0] += 1
            overlaps[0] += inside[0] > 1
            time.sleep(0.0005)
            inside[0] -= 1
            lock.release()

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps[0] == 0


def test_it_travels_to_a_child_process_by_its_path_and_exists_for_sqlite_files_only(tmp_path: Path) -> None:
    lock = StoreWriteLock(str(tmp_path / "db-writer.lock"))
    assert lock.acquire(timeout=1)
    copy = pickle.loads(pickle.dumps(lock))
    assert copy.path == lock.path
    lock.release()
    assert copy.acquire(timeout=1)
    copy.release()
    on_file = store_write_lock(sa.create_engine(f"sqlite:///{tmp_path / 'hub.db'}"))
    assert on_file is not None and on_file.path == f"{tmp_path / 'hub.db'}-writer.lock"
    assert store_write_lock(sa.create_engine("sqlite://")) is None
