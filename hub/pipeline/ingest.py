"""Files and folders through the full pipeline, as ``hub ingest`` takes them.

The files are read in groups of ``group`` (fewer once their bytes reach ``GROUP_BYTES``) and each
group is stored with one commit (``receive_many``). With the inline dispatcher, a group's messages
are saved and processed in that one transaction (``receive_many(together=True)``: nobody waits for
an answer and the files stay the durable source until it commits; see
``hub.pipeline.intake._saved_and_processed``).
With ``jobs`` > 1 and inline processing, a pool of that many worker processes normalizes and
stores the records while the next files are read; its outcome is known only at the end, when a
message it could not process moves from accepted to error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from hub.connector import Tally
from hub.files import iter_files
from hub.pipeline.dispatch import INLINE_BATCH, PoolDispatcher
from hub.pipeline.intake import Arrival, Receipt, receive_many
from hub.store.messages import errors_of, processed_tallies

if TYPE_CHECKING:
    from hub.runtime import Runtime

# Files a group holds: one commit each, and with inline processing one transaction (``INLINE_BATCH``
# messages at most), unless their bytes reach ``GROUP_BYTES`` first: a folder of large batch files is
# not read whole into memory.
GROUP_FILES = INLINE_BATCH
GROUP_BYTES = 64 * 1024 * 1024


def ingest_paths(runtime: Runtime, practice: str, paths: Sequence[str | Path], *, connector: str | None = None,
                 group: int = GROUP_FILES, jobs: int = 1,
                 tallies: dict[str, tuple[Tally, int]] | None = None,
                 receipts: dict[str, list[Receipt]] | None = None) -> dict[str, int]:
    """Store the files (folders: their files) for ``practice``; the messages counted by fate: ``accepted``
    (stored, and processed when inline), ``duplicate`` (a repeat of a stored message), ``error``.

    ``tallies``, when given, is filled per file with what its processed messages held besides their
    records (``Tally``) and how many records they gave, for the files where either is worth saying
    (something not mapped, or no record at all); messages still queued for a worker are not counted.
    ``receipts``, when given, is filled per file with its messages' receipts (``hub ingest --report``)."""
    counts = {"accepted": 0, "duplicate": 0, "error": 0}
    previous = runtime.dispatcher
    own_pool = PoolDispatcher(runtime, jobs) if jobs > 1 and previous.name == "inline" else None
    if own_pool is not None:  # for this call only
        runtime.dispatcher = own_pool
    pool = own_pool or (previous if isinstance(previous, PoolDispatcher) else None)
    pending: list[Arrival] = []
    pending_bytes = 0
    origins: dict[int, str] = {}  # accepted message id → its file, when tallies are asked for

    def flush() -> None:
        nonlocal pending_bytes
        for arrival, fates in zip(pending, receive_many(runtime, practice, pending, connector=connector,
                                                        together=True), strict=True):
            if receipts is not None:
                receipts.setdefault(arrival.origin or "payload", []).extend(fates)
            for receipt in fates:
                counts[receipt.status] += 1
                if tallies is not None and receipt.status == "accepted" and receipt.outcome.message_id:
                    origins[receipt.outcome.message_id] = arrival.origin or "payload"
        pending.clear()
        pending_bytes = 0

    try:
        for path in iter_files(paths):
            pending.append(Arrival(path.read_bytes(), str(path)))
            pending_bytes += len(pending[-1].data)
            if len(pending) >= group or pending_bytes >= GROUP_BYTES:
                flush()
        if pending:
            flush()
        if pool is not None:  # processing went on in the background: its outcome
            late = pool.drain()
            counts["accepted"] -= len(late.errors)
            counts["error"] += len(late.errors)
    finally:
        if own_pool is not None:
            own_pool.close()
            runtime.dispatcher = previous
    if tallies is not None and origins:
        _collect_tallies(runtime, origins, tallies)
    return counts


def _collect_tallies(runtime: Runtime, origins: dict[int, str], tallies: dict[str, tuple[Tally, int]]) -> None:
    per_file: dict[str, tuple[Tally, int]] = {}
    with runtime.engine.connect() as conn:
        for mid, tally_json, records in processed_tallies(conn, list(origins)):
            tally, total = per_file.get(origins[mid], (Tally(), 0))
            if tally_json:
                tally.add(orjson.loads(tally_json))
            per_file[origins[mid]] = (tally, total + (records or 0))
    for origin, (tally, total) in per_file.items():
        if tally or total == 0:
            tallies[origin] = (tally, total)


def acceptance_report(runtime: Runtime, receipts: dict[str, list[Receipt]]) -> dict[str, Any]:
    """``hub ingest --report``: per file, what its messages became. ``report`` is the connector's own JSON
    answer to the file when it has one (the API's answer to the same payload; X12: the 999-style report
    of ``hub_x12``), else ``{messages: [Receipt.describe() ...]}``. A message a worker pool refused after
    it was stored (``--jobs``) is reported as refused, with its stored reason."""
    ids = [r.outcome.message_id for fates in receipts.values() for r in fates
           if r.outcome.accepted and not r.outcome.duplicate and r.outcome.message_id]
    with runtime.engine.connect() as conn:
        late = errors_of(conn, ids)
    files, totals = [], {"accepted": 0, "duplicate": 0, "error": 0}
    for origin, fates in receipts.items():
        final = [dataclasses.replace(r, outcome=dataclasses.replace(r.outcome, accepted=False,
                                                                    error=late[r.outcome.message_id]))
                 if r.outcome.message_id in late and r.status == "accepted" else r for r in fates]
        counted = {status: sum(1 for r in final if r.status == status) for status in totals}
        for key, n in counted.items():
            totals[key] += n
        chosen = next((r.connector for r in final if r.connector is not None), None)
        own = chosen.answer([(r.envelope, r.outcome) for r in final]) if chosen is not None else None
        body: Any = (orjson.loads(own[0]) if own is not None and own[1] == "application/json"
                     else {"messages": [r.describe() for r in final]})
        files.append({"file": origin, "connector": chosen.name if chosen is not None else None, **counted,
                      "report": body})
    return {**totals, "files": files}
