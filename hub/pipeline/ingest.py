"""Files and folders through the full pipeline, as ``hub ingest`` takes them.

The files are read in groups of ``group`` and each group is stored with one commit
(``receive_many``). With ``jobs`` > 1 and inline processing, a pool of that many worker
processes normalizes and stores the records while the next files are read; its outcome is
known only at the end, when a message it could not process moves from accepted to error.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hub.files import iter_files
from hub.pipeline.dispatch import PoolDispatcher
from hub.pipeline.intake import Arrival, receive_many

if TYPE_CHECKING:
    from hub.runtime import Runtime


def ingest_paths(runtime: Runtime, practice: str, paths: Sequence[str | Path], *, connector: str | None = None,
                 group: int = 500, jobs: int = 1) -> dict[str, int]:
    """Store the files (folders: their files) for ``practice``; the messages counted by fate: ``accepted``
    (stored, and processed when inline), ``duplicate`` (a repeat of a stored message), ``error``."""
    counts = {"accepted": 0, "duplicate": 0, "error": 0}
    previous = runtime.dispatcher
    own_pool = PoolDispatcher(runtime, jobs) if jobs > 1 and previous.name == "inline" else None
    if own_pool is not None:  # for this call only
        runtime.dispatcher = own_pool
    pool = own_pool or (previous if isinstance(previous, PoolDispatcher) else None)
    pending: list[Arrival] = []

    def flush() -> None:
        for receipts in receive_many(runtime, practice, pending, connector=connector):
            for receipt in receipts:
                counts[receipt.status] += 1
        pending.clear()

    try:
        for path in iter_files(paths):
            pending.append(Arrival(path.read_bytes(), str(path)))
            if len(pending) >= group:
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
    return counts
