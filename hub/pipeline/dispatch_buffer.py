"""Queue batching for the servers (web, MLLP): message ids from many small group commits become
jobs of about ``HUB_BATCH_SIZE`` ids.

A busy server commits a group every few milliseconds; an rq job per group would
carry a handful of messages and cost a worker as much as a job of a hundred. So
the server hands ids to this buffer, which enqueues a job when it holds a batch
or, at the latest, ``HUB_DISPATCH_DELAY_MS`` (default 200) after the first id. The
delay is what fills the batches: at a few hundred messages a second, 20 ms gave
jobs of about five messages, and the workers spent more CPU on rq than on the
messages (1.6 ms a message, against 0.6 ms with full batches). Processing is not
what the sender waits for, so a fifth of a second more costs nobody anything.
The messages are already committed when they are acknowledged: should the
process die with ids still buffered, they stay ``received`` and a sweeper
(``hub.pipeline.sweeper``: every server and worker runs one) dispatches them again.

The MLLP listener without a queue (inline processing) buffers the same way
(``after_answer``), and its batches are processed by one child process of lower
priority (``ProcessingChild``): a sender on one connection waits for each answer
before it sends the next message, and processing each message before its answer
cost it another commit and most of the listener's time (one connection, SQLite:
95 messages/s). Processing on a thread of the listener after the answer was not
enough either: its batches held the interpreter lock for tens of milliseconds at a
time, and the answers waited (p90 13 ms against 2 ms with no processing in the
process). The answer still follows the durable save; processing follows it.

That child also takes turns with the listener at SQLite's write lock: a batch of a hundred holds it
for about ten milliseconds, and every answer due meanwhile waits for it (one connection: p99 11 ms
against 1.4 ms with no processing). So while intake is busy (a commit in the last ``QUIET_S``) the
buffer holds the ids back, up to ``BUSY_HOLD_S`` after the first one or ``BUSY_HOLD_MAX`` ids, and
hands them over when intake pauses: intake first, processing in the gaps. A feed that never pauses
is processed every ``BUSY_HOLD_S``, so processing falls behind by no more than that.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from hub.pipeline.dispatch import _process_in_child, _start_child, child_factory
from hub.store.write_lock import store_write_lock

log = logging.getLogger("hub.intake")

QUIET_S = 0.05  # no commit for this long: intake pauses, the held ids go to processing
BUSY_HOLD_S = 2.0  # while intake is busy, ids wait at most this long for a pause
BUSY_HOLD_MAX = 5000  # ... or until this many wait


def buffer_dispatcher(runtime: Any, *, after_answer: bool = False,
                      on_child_start: Callable[[Any], None] | None = None) -> bool:
    """Give a server's runtime the buffered rq dispatcher (``HUB_DISPATCH_DELAY_MS=0``: one job per commit);
    ``after_answer``: inline processing too is buffered, and runs after the answer in a child process, which
    calls ``on_child_start(its runtime)`` first (the background work that follows processing goes there
    too). True when processing now runs in that child."""
    delay_ms = runtime.settings.dispatch_delay_ms
    if after_answer and runtime.dispatcher.name == "inline":
        # batches of HUB_BATCH_SIZE: the write of each holds SQLite's write lock, which the listener's
        # commits wait for, so the batches are kept short
        child = ProcessingChild(runtime, on_start=on_child_start).start()
        runtime.dispatcher = BufferedDispatcher(child, delay_s=max(delay_ms, 1.0) / 1e3,
                                                batch=runtime.settings.batch_size, busy_hold_s=BUSY_HOLD_S)
        return True
    if runtime.dispatcher.name == "rq" and delay_ms:
        runtime.dispatcher = BufferedDispatcher(runtime.dispatcher, delay_s=delay_ms / 1e3,
                                                batch=runtime.settings.batch_size)
    return False


class BufferedDispatcher:
    """``busy_hold_s``: while ids keep coming (a commit in the last ``QUIET_S``), hold them back for up
    to this long (or ``BUSY_HOLD_MAX`` ids), past the batch and delay (intake first); 0: no hold."""

    def __init__(self, inner: Any, *, delay_s: float | None = None, batch: int | None = None,
                 busy_hold_s: float = 0.0) -> None:
        self.inner = inner
        self.name = inner.name
        # the inner dispatcher's turns at a SQLite store's write lock, taken by this process's commits too
        self.write_lock = getattr(inner, "write_lock", None)
        self.delay_s = delay_s if delay_s is not None else inner.runtime.settings.dispatch_delay_ms / 1e3
        self.batch = batch or inner.runtime.settings.batch_size
        self.busy_hold_s = busy_hold_s
        self._ids: list[int] = []
        self._first_at = self._last_at = 0.0  # monotonic: the first id buffered, the latest submit
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0
        atexit.register(self.flush)

    def submit(self, message_ids: Sequence[int]) -> None:
        with self._cond:
            if self._thread is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._ids = []
                self._thread = threading.Thread(target=self._run, name="hub-dispatch", daemon=True)
                self._thread.start()
            now = time.monotonic()
            if not self._ids:
                self._first_at = now
            self._last_at = now
            self._ids.extend(message_ids)
            # holding: the thread wakes at its own deadlines, not at every commit (the listener's GIL)
            if not self.busy_hold_s or len(self._ids) == len(message_ids) or len(self._ids) >= BUSY_HOLD_MAX:
                self._cond.notify()
        return None

    def take_abandoned(self) -> list[int]:
        """The queue's jobs whose worker died (``RqDispatcher.take_abandoned``); none inline."""
        take = getattr(self.inner, "take_abandoned", None)
        return list(take()) if take is not None else []

    def describe(self) -> dict[str, object]:
        state = dict(self.inner.describe())
        with self._cond:
            state["buffered_ids"] = len(self._ids)
        return state

    def flush(self) -> None:
        with self._cond:
            ids, self._ids = self._ids, []
        self._send(ids)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._ids:
                    self._cond.wait()
                if self.busy_hold_s:
                    self._hold()
                else:  # wait for a full batch, or the delay, whichever comes first
                    self._cond.wait_for(lambda: len(self._ids) >= self.batch, timeout=self.delay_s)
                ids, self._ids = self._ids, []
            self._send(ids)

    def _hold(self) -> None:
        """With ``_cond`` held: wait for a full batch or the delay, and then, while intake is busy, for
        it to pause, at most ``busy_hold_s`` after the first id or until ``BUSY_HOLD_MAX`` ids."""
        while len(self._ids) < BUSY_HOLD_MAX:
            now = time.monotonic()
            due = self._first_at + self.delay_s
            if len(self._ids) >= self.batch or now >= due:
                due = min(self._last_at + QUIET_S, self._first_at + self.busy_hold_s)
            if now >= due:
                return
            self._cond.wait(due - now)

    def _send(self, ids: list[int]) -> None:
        if not ids:
            return
        try:
            self.inner.submit(ids)
        except Exception as exc:  # Redis away, the processing child gone: the messages stay received
            log.error("could not hand over %d stored messages (%s); they stay received for the sweeper",
                      len(ids), type(exc).__name__)


def _start_processing_child(factory: Any, database_url: str, niceness: int,
                            on_start: Callable[[Any], None] | None, write_lock: Any = None) -> None:
    if niceness:  # the listener's answers first: processing takes the CPU they leave
        os.nice(niceness)
    _start_child(factory, database_url, write_lock)
    if on_start is not None:
        from hub.pipeline import dispatch

        on_start(dispatch._CHILD)


class ProcessingChild:
    """Inline processing for a server without a queue, in one child process started with ``spawn`` (the
    server runs threads already, which ``fork`` would copy mid-flight) at a lower priority. Batches are
    processed in the order given; a batch that fails stays ``received`` for the sweeper."""

    name = "pool"
    PENDING = 4  # batches handed over and not done before ``submit`` waits (the buffer's thread, never a sender)

    def __init__(self, runtime: Any, *, niceness: int = 10, on_start: Callable[[Any], None] | None = None) -> None:
        self.runtime = runtime
        self.niceness = niceness
        self.on_start = on_start
        self._pool: Any = None
        self._pending: deque[Future[Any]] = deque()
        self._lock = threading.Lock()
        # SQLite: the child's batch transactions and the server's commits take turns by this lock, so the
        # server's next commit (an ACK) follows the child's at once, not after SQLite's busy-handler sleep
        self.write_lock = store_write_lock(runtime.engine)

    def _executor(self) -> Any:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if self._pool is None or getattr(self._pool, "_broken", False):
            self._pool = ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn"), initializer=_start_processing_child,
                initargs=(child_factory(self.runtime), self.runtime.database_url, self.niceness, self.on_start,
                          self.write_lock))
        return self._pool

    def start(self) -> ProcessingChild:
        """Start the child now (it imports the pipeline and opens the store: seconds), not with the first batch."""
        with self._lock:
            self._pending.append(self._executor().submit(int))
        return self

    def submit(self, message_ids: Sequence[int]) -> None:
        size = self.runtime.settings.batch_size
        for start in range(0, len(message_ids), size):
            with self._lock:
                future = self._executor().submit(_process_in_child, list(message_ids[start:start + size]))
                future.add_done_callback(_log_failure)
                self._pending.append(future)
                while self._pending and self._pending[0].done():
                    self._pending.popleft()
                oldest = self._pending[0] if len(self._pending) > self.PENDING else None
            if oldest is not None:
                oldest.exception()  # waits: the child is behind
        return None

    def close(self) -> None:
        """Wait for the batches handed over, then stop the child."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def describe(self) -> dict[str, object]:
        with self._lock:
            waiting = sum(1 for f in self._pending if not f.done())
        # a backlog being worked through: the sweeper does not take its messages again meanwhile
        return {"kind": "pool", "ok": True, "jobs": 1, "queued_jobs": waiting}


def _log_failure(future: Future[Any]) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("a processing batch failed (%s); its messages stay received for the sweeper", type(exc).__name__)
