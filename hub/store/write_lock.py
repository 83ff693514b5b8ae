"""Turns at a SQLite store's write lock between processes that know of each other (``hub mllp`` and
its processing child), by an advisory lock on a file beside the database.

SQLite lets one writer at a time and makes the others poll in its busy handler, which sleeps longer
the longer it waits (1, 2, 5 … up to 100 ms a time): when the processing child held the lock for a
batch, the listener's next commit, and so the next ACK on a single connection, slept for up to tens
of milliseconds past the child's commit. Taking this lock around their write transactions, a waiter
goes ahead within a fraction of a millisecond of the holder's release.

The lock is ``flock``: the kernel releases it when its holder dies, ``kill -9`` included, so a
killed child never leaves the listener waiting. It only orders the writers that take it; SQLite's
own locking still keeps the store consistent for every other writer.
"""

from __future__ import annotations

import fcntl
import os
import threading
from typing import Any


def lock_path(database: str) -> str:
    return f"{database}-writer.lock"


class StoreWriteLock:
    """``acquire(timeout)`` / ``release()`` as ``write_turn`` takes them; picklable (a child process opens
    the file itself). Threads of one process take turns too (the thread lock in front of the file's)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1
        self._pid = 0
        self._threads = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]

    def _file(self) -> int:
        if self._fd < 0 or self._pid != os.getpid():  # a descriptor inherited over a fork shares the lock
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._fd

    def acquire(self, timeout: float) -> bool:
        if not self._threads.acquire(timeout=timeout):
            return False
        try:
            fd = self._file()
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        except OSError:  # the folder is not writable for it, say: SQLite's own locking alone, as before
            self._threads.release()
            return False
        if self._wait(fd, timeout):
            return True
        self._threads.release()
        return False

    def _wait(self, fd: int, timeout: float) -> bool:
        """Held by another process: a blocking ``flock`` wakes the moment it is released (polling sleeps
        would oversleep by milliseconds on a busy machine), on a thread of its own so that the wait can
        be given up after ``timeout``; a lock got after that is let go at once."""
        got = threading.Event()
        given_up = False
        guard = threading.Lock()

        def wait() -> None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                return
            with guard:
                if given_up:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)
                    return
                got.set()

        threading.Thread(target=wait, name="hub-write-lock", daemon=True).start()
        if got.wait(timeout):
            return True
        with guard:
            if got.is_set():
                return True
            given_up = True
            self._fd = -1  # that descriptor is the waiting thread's now: the next turn opens another
        return False

    def release(self) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()


def store_write_lock(engine: Any) -> StoreWriteLock | None:
    """The lock of a SQLite store on a file (None for PostgreSQL, which writes side by side, and memory)."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return StoreWriteLock(lock_path(os.path.abspath(database)))
