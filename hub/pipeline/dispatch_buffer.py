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
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("hub.intake")


def buffer_dispatcher(runtime: Any) -> None:
    """Give a server's runtime the buffered rq dispatcher (``HUB_DISPATCH_DELAY_MS=0``: one job per commit)."""
    delay_ms = runtime.settings.dispatch_delay_ms
    if runtime.dispatcher.name == "rq" and delay_ms:
        runtime.dispatcher = BufferedDispatcher(runtime.dispatcher, delay_s=delay_ms / 1e3,
                                                batch=runtime.settings.batch_size)


class BufferedDispatcher:
    def __init__(self, inner: Any, *, delay_s: float | None = None, batch: int | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.delay_s = delay_s if delay_s is not None else inner.runtime.settings.dispatch_delay_ms / 1e3
        self.batch = batch or inner.runtime.settings.batch_size
        self._ids: list[int] = []
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
            self._ids.extend(message_ids)
            self._cond.notify()
        return None

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
                # wait for a full batch, or the delay, whichever comes first
                self._cond.wait_for(lambda: len(self._ids) >= self.batch, timeout=self.delay_s)
                ids, self._ids = self._ids, []
            self._send(ids)

    def _send(self, ids: list[int]) -> None:
        if not ids:
            return
        try:
            self.inner.submit(ids)
        except Exception as exc:  # Redis away: the messages stay received; a worker requeues them at start
            log.error("could not enqueue %d stored messages (%s); they stay received", len(ids), type(exc).__name__)
