"""Stored messages → canonical store, one transaction per batch.

Normalizing is pure and happens outside the transaction; then the records of
every good message are upserted, and every message's status set, in one
commit. A message that cannot be read or mapped goes to ``error`` with its
reason at once (retrying would not change the answer). A store failure rolls
the whole batch back and leaves the messages ``received`` for the dispatcher's
retry; on the last attempt they go to ``error`` with the failure as reason.
Either way the message itself stays in the message store, never lost.

``hub ingest`` with the inline dispatcher processes a batch inside the transaction that saves it
(``process_in_transaction``, called by ``hub.pipeline.intake``): one commit holds the messages with
their outcome, and when that transaction fails the batch is saved, committed, then processed here.

What else must move with the records (the report rollups) is done by the plugins of the
store hooks, ``hub_records_storing`` and ``hub_records_stored``, inside the transaction,
once per batch; messages that went to ``error`` are announced once per batch, after the
commit, through ``hub_messages_failed`` (``announce_failures``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import operator
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from hub.connector import Envelope
from hub.errors import HubError, StoreError
from hub.hookspecs import MessageFailure, RecordBatch
from hub.mapping import Mapping, load_mapping
from hub.pipeline.normalize import normalize_envelope
from hub.store import canonical
from hub.store import messages as message_store
from hub.store.engine import writer
from hub.store.practices import get_practice

if TYPE_CHECKING:
    from hub.plugins import Plugins
    from hub.runtime import Runtime

log = logging.getLogger("hub.pipeline")
UNKNOWN = "unknown"  # the connector name of a payload no installed connector recognised at intake
_PRACTICE = operator.itemgetter("practice")


@dataclass
class BatchResult:
    processed: dict[int, int] = field(default_factory=dict)  # message id → records
    errors: dict[int, str] = field(default_factory=dict)  # message id → reason
    tallies: dict[int, dict[str, Any]] = field(default_factory=dict)  # message id → what was not mapped

    def merge(self, other: BatchResult) -> None:
        self.processed.update(other.processed)
        self.errors.update(other.errors)
        self.tallies.update(other.tallies)


def _mappings(conn: sa.Connection, practices: set[str]) -> dict[str, tuple[Mapping, str | None]]:
    """Each practice's mapping and time zone."""
    out = {}
    for slug in practices:
        row = get_practice(conn, slug)
        mapping = load_mapping(row["mapping"], source=f"mapping of practice {slug}")
        out[slug] = (mapping, mapping.practice_zone(row["timezone"]))
    return out


class _PluginFailed(Exception):
    """A store hook raised: handled as a store failure (the batch rolls back, to be retried)."""


def _store_hook(caller: Any, conn: sa.Connection, batch: RecordBatch) -> None:
    try:
        caller(conn=conn, batch=batch)
    except sa.exc.SQLAlchemyError:
        raise
    except Exception as exc:  # the type only: a plugin's message may quote the records
        raise _PluginFailed(f"a {caller.name} plugin raised {type(exc).__name__}") from exc


_QUOTED = re.compile(r'"[^"]*"|\'[^\']*\'')


def store_failure(exc: BaseException) -> str:
    """What a failed store statement says, for a person and a log: the driver's error type, its SQLSTATE
    where it has one, and the first line of its message with every quoted part left out (a value the
    database quotes back, ``invalid input syntax for type date: "SMITH"``, may be patient data)."""
    cause = getattr(exc, "orig", None) or exc
    code = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    first = (str(cause).splitlines() or [""])[0]
    said = _QUOTED.sub("…", first)[:300]
    return f"{type(cause).__name__}{f' ({code})' if code else ''}: {said}"


def announce_failures(plugins: Plugins, failures: Sequence[MessageFailure]) -> None:
    """Tell the ``hub_messages_failed`` plugins of messages now in ``error`` (committed already).

    A plugin that raises is logged, by the exception's type only, and ingest goes on."""
    if not failures:
        return
    try:
        plugins.hook.hub_messages_failed(failures=failures)
    except Exception as exc:
        log.warning("a hub_messages_failed plugin raised %s on %d failure(s); the messages are in error",
                    type(exc).__name__, len(failures))


def _failures(rows: Sequence[Any], errors: dict[int, str], stage: str) -> list[MessageFailure]:
    return [MessageFailure(r.id, r.practice, r.connector, errors[r.id], stage) for r in rows if r.id in errors]


WRITE_TURN_WAIT = 30.0  # seconds: longer than any batch's write; a lock not had by then is done without


@contextlib.contextmanager
def write_turn(lock: Any | None) -> Iterator[None]:
    """A pool process's turn to write to a SQLite store (``hub ingest --jobs``). The pool's processes
    take one lock around their write transactions, so a writer waiting for another wakes as soon as it
    is done, instead of polling in SQLite's busy handler, which sleeps longer the longer it waits (up
    to 100 ms a time: the two workers of ``--jobs 2`` were slower than one process). SQLite's own
    locking still keeps the store consistent: the lock is not had in ``WRITE_TURN_WAIT`` seconds (its
    holder died, say), the transaction goes ahead without it."""
    if lock is None:
        yield
        return
    acquired = lock.acquire(timeout=WRITE_TURN_WAIT)
    try:
        yield
    finally:
        if acquired:
            lock.release()


def process_messages(runtime: Runtime, ids: Sequence[int], *, statuses: tuple[str, ...] = ("received",),
                     final_attempt: bool = True, write_lock: Any | None = None) -> BatchResult:
    """Process the stored messages ``ids`` in one batch; ``write_lock``: the pool's (``write_turn``)."""
    result = BatchResult()
    engine = runtime.engine
    with engine.connect() as conn:
        rows = message_store.load_for_processing(conn, ids, statuses=statuses)
        if not rows:
            return result
        mappings = _mappings_or_errors(conn, rows, result)

    to_store, practices = _normalize_rows(runtime, rows, mappings, result)
    try:
        with write_turn(write_lock), writer(engine).begin() as conn:
            _write_batch(runtime, conn, to_store, result)
    except (sa.exc.SQLAlchemyError, _PluginFailed) as exc:
        reason = f"store failure: {exc if isinstance(exc, _PluginFailed) else store_failure(exc)}"
        batch_ids = [r.id for r in rows]
        log.warning("batch of %d messages not stored (%s)", len(batch_ids), reason)
        failed = dict.fromkeys(batch_ids, reason)
        try:
            with writer(engine).begin() as conn:
                if final_attempt:
                    message_store.mark_error(conn, failed)
                else:
                    message_store.note_attempt(conn, batch_ids, reason)
        except sa.exc.SQLAlchemyError:
            log.error("could not record the failure either; messages stay received for a retry")
        else:
            if final_attempt:
                announce_failures(runtime.plugins, _failures(rows, failed, "store"))
        if final_attempt:
            return BatchResult(errors=failed)
        raise StoreError(reason) from exc
    announce_processed(runtime, rows, result, practices)
    return result


def process_in_transaction(runtime: Runtime, conn: sa.Connection, rows: Sequence[message_store.Loaded]
                           ) -> tuple[BatchResult, set[str]]:
    """Process messages just saved in the caller's open transaction ``conn`` (``hub ingest``'s one
    transaction per batch, ``hub.pipeline.intake``): the rows come from memory, not read back, and
    every write joins the caller's commit. Returns the outcome and the practices given records, for
    ``announce_processed`` once committed. A store failure or any other error propagates: the caller
    rolls back the whole transaction and takes the path of separate commits."""
    result = BatchResult()
    if not rows:
        return result, set()
    mappings = _mappings_or_errors(conn, rows, result)
    to_store, practices = _normalize_rows(runtime, rows, mappings, result)
    _write_batch(runtime, conn, to_store, result)
    return result, practices


def _mappings_or_errors(conn: sa.Connection, rows: Sequence[Any], result: BatchResult
                        ) -> dict[str, tuple[Mapping, str | None]]:
    """The mappings of the rows' practices; when one cannot be read, every row goes to error with the reason."""
    try:
        return _mappings(conn, {r.practice for r in rows})
    except HubError as exc:
        for r in rows:
            result.errors[r.id] = str(exc)
        return {}


def _normalize_rows(runtime: Runtime, rows: Sequence[Any], mappings: dict[str, tuple[Mapping, str | None]],
                    result: BatchResult) -> tuple[list[tuple[dict[str, Any], int]], set[str]]:
    """Each row's records (with its message id) to store, and the practices they belong to; a message
    that cannot be read or mapped goes to ``result.errors``, the others to ``result.processed``."""
    to_store: list[tuple[dict[str, Any], int]] = []
    practices: set[str] = set()  # of the records to store
    plugins = runtime.plugins
    connectors = plugins.connectors
    errors, processed, tallies = result.errors, result.processed, result.tallies
    for row in rows:
        message_id = row.id
        if message_id in errors:
            continue
        try:
            if row.connector == UNKNOWN:  # no connector recognised it at intake: one installed since may
                connector = connectors.detect(row.raw or b"", origin=row.origin)
            else:
                connector = connectors.get(row.connector)
        except HubError as exc:
            errors[message_id] = str(exc)
            continue
        envelope = Envelope(row.raw, row.sender, row.control_id, row.message_type)
        mapping, timezone = mappings[row.practice]
        done = normalize_envelope(plugins, connector, envelope, practice=row.practice, mapping=mapping,
                                  message_id=message_id, origin=row.origin, timezone=timezone,
                                  arrival=row.received_at)
        if done.error is not None:
            errors[message_id] = str(done.error)
            continue
        records = done.records
        to_store.extend(zip(records, itertools.repeat(message_id)))
        practices.update(map(_PRACTICE, records))
        processed[message_id] = len(records)
        if done.tally:
            tallies[message_id] = done.tally.as_dict()
    return to_store, practices


def _write_batch(runtime: Runtime, conn: sa.Connection, to_store: list[tuple[dict[str, Any], int]],
                 result: BatchResult) -> None:
    """The batch's records upserted (with the store hooks around) and its messages' statuses, in ``conn``'s
    transaction."""
    if to_store:
        hook = runtime.plugins.hook
        batch = RecordBatch(to_store)
        _store_hook(hook.hub_records_storing, conn, batch)  # e.g. the report cells the rows sit in now
        canonical.upsert_records(conn, to_store)
        _store_hook(hook.hub_records_stored, conn, batch)  # ... and the cells they moved to
    message_store.mark_processed(conn, result.processed, result.tallies)
    message_store.mark_error(conn, result.errors)


def announce_processed(runtime: Runtime, rows: Sequence[Any], result: BatchResult, practices: set[str]) -> None:
    """Once the batch is committed: ``hub_records_committed`` for the practices given records, then
    ``hub_messages_failed`` for the messages in error."""
    if practices:
        _announce_committed(runtime.plugins, sorted(practices))
    if result.errors:
        log.info("%d of %d messages in error", len(result.errors), len(rows))
        announce_failures(runtime.plugins, _failures(rows, result.errors, "process"))


def _announce_committed(plugins: Plugins, practices: list[str]) -> None:
    """``hub_records_committed``: the batch stands whatever a plugin does with the news."""
    try:
        plugins.hook.hub_records_committed(practices=practices)
    except Exception as exc:
        log.warning("a hub_records_committed plugin failed (%s)", type(exc).__name__)
