"""Reprocessing: replay stored messages through the current connectors and mapping."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hub.errors import IntegrityError
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
    what a fixed mapping or connector now reads differently.

    Each chosen message's bytes are checked against the hash taken when they arrived first: when any
    differs, nothing is replayed (``IntegrityError`` naming the ids) and every message stays as it is."""
    with writer(runtime.engine).begin() as conn:
        chosen = message_store.ids_for_reprocess(conn, practice=practice, status=status, ids=ids)
        _verify(conn, chosen)
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


def _verify(conn: Any, chosen: Sequence[int]) -> None:
    bad = message_store.altered(conn, chosen)
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise IntegrityError(f"the stored content of message(s) {shown} no longer matches the hash taken when "
                             f"it arrived; nothing was reprocessed (restore the rows from a backup, or "
                             f"leave them out)", ids=bad)


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
        chosen = message_store.ids_for_reprocess(conn, practice=practice, status=None)
        _verify(conn, chosen)  # before anything is cleared
        runtime.plugins.hook.hub_records_clearing(conn=conn, practice=practice)
        canonical.delete_practice(conn, practice)
        message_store.requeue(conn, chosen)
    return _dispatch(runtime, chosen)
