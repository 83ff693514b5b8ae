"""Reprocessing: replay stored messages through the current connectors and mapping."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from hub.security.audit import AuditEntry, record
from hub.store import canonical
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
    return _dispatch(runtime, chosen)


def resolve(runtime: Runtime, ids: Sequence[int], *, reason: str, who: str) -> list[int]:
    """Mark messages in error resolved (an error no replay can fix: superseded, or fixed at the source);
    reprocessing leaves them. Each gets an audit entry: action ``messages.resolve``, the message id, ``who``
    as the address and the reason (its first 64 characters) as the outcome. The ids marked."""
    with writer(runtime.engine).begin() as conn:
        done = message_store.resolve(conn, ids)
        record(conn, [AuditEntry(None, "messages.resolve", str(message_id), practice, who, reason)
                      for message_id, practice in done])
    return [message_id for message_id, _ in done]


def _dispatch(runtime: Runtime, chosen: list[int]) -> dict[str, int]:
    """Hand requeued messages to the dispatcher; the counts (``queued``: left to the workers)."""
    result = runtime.dispatcher.submit(chosen) if chosen else None
    return {"submitted": len(chosen),
            "processed": len(result.processed) if result else 0,
            "error": len(result.errors) if result else 0,
            "queued": int(result is None and bool(chosen))}


def reread_practice(runtime: Runtime, practice: str) -> dict[str, int]:
    """Read every stored message of a practice again from a clean slate (after its time zone
    changed: a time sent without an offset now means another instant).

    The practice's canonical rows and lineage are cleared and its messages dispatched again in
    one transaction's wake; since the store keeps each field's latest event whatever the order,
    the rows come back as an incremental load would have left them. The ``hub_records_clearing``
    plugins hear of the clear first (the report upkeep marks the practice's cells: its records may
    move to other days and months), and the store hooks of the writes after it."""
    with writer(runtime.engine).begin() as conn:
        runtime.plugins.hook.hub_records_clearing(conn=conn, practice=practice)
        canonical.delete_practice(conn, practice)
        chosen = message_store.ids_for_reprocess(conn, practice=practice, status=None)
        message_store.requeue(conn, chosen)
    return _dispatch(runtime, chosen)
