"""Group commit across concurrent arrivals (HTTP requests, MLLP connections).

Each server process runs one committer thread. A request or connection hands its
payload over and waits; the thread collects whatever arrives while the previous
commit runs, and within a few milliseconds more once several wait (up to
``HUB_GROUP_MAX`` payloads), stores them with one ``receive_many`` per practice
and media type (one transaction) and wakes each sender with its receipts. The
answer is therefore still sent only after the payload is committed, but a busy
server pays one commit per group, not per message. An idle server adds no delay:
a lone payload is committed at once, and by its sender's own thread
(``commit_if_idle``) when the committer has nothing in hand, which spares the
two thread hand-offs (a wake-up each, milliseconds on a loaded machine: one MLLP
connection waits for every answer). Only what arrives while a commit runs is
batched, so nothing ever waits for company that may not come.

The thread keeps one database connection of its own: a group costs its
transaction's statements only, no pool checkout, liveness ping or reset. A
connection the database dropped is replaced and the group tried once more on
the new one (the failed transaction stored nothing; should it have committed
after all, the store's dedup answers the repeat as a duplicate).

The audit entries of a group (HTTP) commit in the same transaction as its messages.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sqlalchemy as sa

from hub.errors import NotFound
from hub.pipeline.intake import Arrival, Receipt, receive_many
from hub.pipeline.process import write_turn
from hub.security.audit import AuditEntry, record
from hub.store.engine import writer

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = logging.getLogger("hub.intake")

# WAL pages (SQLite's default), not the store's 10,000 (hub.store.engine), on the connection of an MLLP
# listener with a processing child: a WAL kept small is rewritten in place once checkpointed, and a
# commit that only overwrites the file syncs faster than one that makes it grow (one connection, a
# commit an answer: ~0.1 ms of each); the checkpoint every ~4 MB costs a commit a few ms now and then
COMMITTER_AUTOCHECKPOINT = 1000


@dataclass
class Pending:
    """One payload waiting for its commit; ``future`` gets its receipts (or the failure)."""

    practice: str
    media_type: str | None
    arrival: Arrival
    audit: AuditEntry | None = None
    connector: str | None = None
    future: Future[list[Receipt]] = field(default_factory=Future)


def fate_summary(fates: list[str]) -> str:
    """A short word for the audit log: what became of the payload's messages (no content)."""
    if fates and all(f == "refused" for f in fates):
        return "rejected"
    counts: dict[str, int] = defaultdict(int)
    for f in fates:
        counts[f] += 1
    return " ".join(f"{k}={v}" for k, v in sorted(counts.items()))


class GroupCommitter:
    def __init__(self, runtime: Runtime, *, window_s: float | None = None, max_group: int | None = None) -> None:
        self.runtime = runtime
        self.window_s = window_s if window_s is not None else runtime.settings.group_window_ms / 1e3
        self.max_group = max_group or runtime.settings.group_max
        self._queue: queue.Queue[Pending] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._busy = threading.Lock()  # held while a group commits, by the thread or a sender (commit_if_idle)
        self._conn: sa.Connection | None = None

    def _ensure_thread(self) -> None:
        # started lazily, in the process that serves (a thread does not survive a fork)
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._queue = queue.Queue()
                self._conn = None  # a connection inherited over a fork is not ours to use
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="hub-group-commit", daemon=True)
                self._thread.start()

    def enqueue(self, item: Pending) -> Future[list[Receipt]]:
        """Hand the payload over; its future is done once the payload is committed (or failed)."""
        self._ensure_thread()
        self._queue.put(item)
        return item.future

    def submit(self, item: Pending, timeout_s: float) -> list[Receipt]:
        """Store the payload (with the others arriving now) and return its receipts."""
        if self.commit_if_idle(item):
            return item.future.result()
        return self.enqueue(item).result(timeout=timeout_s)

    def commit_if_idle(self, item: Pending) -> bool:
        """Commit a lone payload now, in the calling thread, when nothing else waits or commits; False
        (nothing done) otherwise: then ``enqueue`` it. When True, its future is done."""
        self._ensure_thread()
        if not self._queue.empty() or not self._busy.acquire(blocking=False):
            return False
        try:
            if not self._queue.empty():  # arrived meanwhile: the thread takes them all together
                return False
            self._commit_group([item])
        finally:
            self._busy.release()
        return True

    def _run(self) -> None:
        while True:
            group = [self._queue.get()]
            deadline = time.monotonic() + self.window_s
            while len(group) < self.max_group:
                try:
                    group.append(self._queue.get_nowait())
                    continue
                except queue.Empty:
                    pass
                if len(group) == 1:
                    break  # nobody else waiting: commit the lone payload now
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    group.append(self._queue.get(timeout=remaining))
                except queue.Empty:
                    break
            with self._busy:
                self._commit_group(group)

    def _commit_group(self, group: list[Pending]) -> None:
        try:
            # a SQLite store shared with a processing child: its turn at the write lock (``write_turn``)
            with write_turn(getattr(self.runtime.dispatcher, "write_lock", None)):
                self._commit(group)
        except Exception as exc:  # keep the thread alive whatever happens; nobody waits forever
            log.error("group commit failed (%s)", type(exc).__name__)
            for item in group:
                if not item.future.done():
                    item.future.set_exception(exc)

    def _connection(self) -> sa.Connection:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            if self._conn is not None:
                self._conn.close()
            self._conn = writer(self.runtime.engine).connect()
            if getattr(self.runtime.dispatcher, "write_lock", None) is not None:
                # SQLite with a processing child (hub mllp): the answers wait for this connection's commits
                self._conn.connection.driver_connection.execute(  # type: ignore[union-attr]
                    f"PRAGMA wal_autocheckpoint={COMMITTER_AUTOCHECKPOINT}")
        return self._conn

    def _store(self, practice: str, media_type: str | None, connector: str | None,
               items: list[Pending]) -> list[list[Receipt]]:
        audited = [item for item in items if item.audit is not None]

        def audit(conn: sa.Connection, fates: list[list[str]]) -> None:
            # in the transaction that saves the messages: an answered request is an audited one
            record(conn, [_with_outcome(item.audit, fate_summary(f))
                          for item, f in zip(items, fates, strict=True) if item.audit is not None])

        for attempt in (1, 2):
            conn = self._connection()
            try:
                return receive_many(self.runtime, practice, [i.arrival for i in items], media_type=media_type,
                                    connector=connector, in_transaction=audit if audited else None,
                                    connection=conn)
            except sa.exc.DBAPIError as exc:
                if not exc.connection_invalidated or attempt == 2:
                    raise
                log.warning("the database connection was lost (%s); storing the group again on a new one",
                            type(exc).__name__)
        raise AssertionError("unreachable")

    def _commit(self, group: list[Pending]) -> None:
        by_target: dict[tuple[str, str | None, str | None], list[Pending]] = defaultdict(list)
        for item in group:
            by_target[(item.practice, item.media_type, item.connector)].append(item)
        for (practice, media_type, connector), items in by_target.items():
            try:
                results = self._store(practice, media_type, connector, items)
            except Exception as exc:  # the whole sub-group failed: nothing stored, each sender answers it
                if not isinstance(exc, _EXPECTED):
                    log.warning("could not store %d payload(s) for %s (%s)", len(items), practice,
                                type(exc).__name__)
                self._audit_failure(items, exc)
                for item in items:
                    item.future.set_exception(exc)
                continue
            for item, receipts in zip(items, results, strict=True):
                item.future.set_result(receipts)

    def _audit_failure(self, items: list[Pending], exc: BaseException) -> None:
        entries = [_with_outcome(i.audit, f"failed {type(exc).__name__}") for i in items if i.audit is not None]
        if not entries:
            return
        try:
            with writer(self.runtime.engine).begin() as conn:
                record(conn, entries)
        except Exception as again:
            log.error("could not write %d audit entries (%s)", len(entries), type(again).__name__)


def _with_outcome(entry: AuditEntry | None, outcome: str) -> AuditEntry:
    assert entry is not None
    return AuditEntry(entry.key_id, entry.action, entry.target, entry.practice, entry.address, outcome[:64], entry.at)


def _expected_errors() -> tuple[type[BaseException], ...]:
    return (NotFound,)


_EXPECTED = _expected_errors()
