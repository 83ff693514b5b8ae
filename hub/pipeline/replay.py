"""Reprocessing: replay stored messages through the current connectors and mapping."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from hub.store import messages as message_store
from hub.store.engine import writer

if TYPE_CHECKING:
    from hub.runtime import Runtime


def reprocess(runtime: Runtime, *, practice: str | None = None, status: str | None = None,
              ids: Sequence[int] = ()) -> dict[str, int]:
    """Put the chosen messages back to ``received`` and dispatch them again.

    Upserts are idempotent, so replaying a processed message changes nothing but
    what a fixed mapping or connector now reads differently."""
    with writer(runtime.engine).begin() as conn:
        chosen = message_store.ids_for_reprocess(conn, practice=practice, status=status, ids=ids)
        message_store.requeue(conn, chosen)
    result = runtime.dispatcher.submit(chosen) if chosen else None
    return {"submitted": len(chosen),
            "processed": len(result.processed) if result else 0,
            "error": len(result.errors) if result else 0,
            "queued": int(result is None and bool(chosen))}
