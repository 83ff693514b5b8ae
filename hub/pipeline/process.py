"""Stored messages → canonical store, one transaction per batch.

Normalizing is pure and happens outside the transaction; then the records of
every good message are upserted, and every message's status set, in one
commit. A message that cannot be read or mapped goes to ``error`` with its
reason at once (retrying would not change the answer). A store failure rolls
the whole batch back and leaves the messages ``received`` for the dispatcher's
retry; on the last attempt they go to ``error`` with the failure as reason.
Either way the message itself stays in the message store, never lost.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from hub.connector import Envelope
from hub.errors import HubError, StoreError
from hub.mapping import Mapping, load_mapping
from hub.pipeline.normalize import normalize_envelope
from hub.reports import rollups as report_rollups
from hub.store import canonical
from hub.store import messages as message_store
from hub.store.engine import writer
from hub.store.practices import get_practice

if TYPE_CHECKING:
    from hub.runtime import Runtime

log = logging.getLogger("hub.pipeline")


@dataclass
class BatchResult:
    processed: dict[int, int] = field(default_factory=dict)  # message id → records
    errors: dict[int, str] = field(default_factory=dict)  # message id → reason

    def merge(self, other: BatchResult) -> None:
        self.processed.update(other.processed)
        self.errors.update(other.errors)


def _mappings(conn: sa.Connection, practices: set[str]) -> dict[str, tuple[Mapping, str | None]]:
    """Each practice's mapping and time zone."""
    out = {}
    for slug in practices:
        row = get_practice(conn, slug)
        mapping = load_mapping(row["mapping"], source=f"mapping of practice {slug}")
        out[slug] = (mapping, mapping.practice_zone(row["timezone"]))
    return out


def process_messages(runtime: Runtime, ids: Sequence[int], *, statuses: tuple[str, ...] = ("received",),
                     final_attempt: bool = True) -> BatchResult:
    result = BatchResult()
    engine = runtime.engine
    with engine.connect() as conn:
        rows = message_store.load_for_processing(conn, ids, statuses=statuses)
        if not rows:
            return result
        try:
            mappings = _mappings(conn, {r.practice for r in rows})
        except HubError as exc:
            mappings = {}
            for r in rows:
                result.errors[r.id] = str(exc)

    to_store: list[tuple[dict[str, Any], int]] = []
    for row in rows:
        if row.id in result.errors:
            continue
        try:
            connector = runtime.plugins.connectors.get(row.connector)
        except HubError as exc:
            result.errors[row.id] = str(exc)
            continue
        envelope = Envelope(raw=row.raw, sender=row.sender, control_id=row.control_id,
                            message_type=row.message_type)
        mapping, timezone = mappings[row.practice]
        done = normalize_envelope(runtime.plugins, connector, envelope, practice=row.practice, mapping=mapping,
                                  message_id=row.id, origin=row.origin, timezone=timezone,
                                  arrival=row.received_at)
        if done.error is not None:
            result.errors[row.id] = str(done.error)
            continue
        to_store.extend((rec, row.id) for rec in done.records)
        result.processed[row.id] = len(done.records)

    try:
        with writer(engine).begin() as conn:
            with report_rollups.tracking(conn, to_store):  # the KPI rollups move with the records
                canonical.upsert_records(conn, to_store)
            message_store.mark_processed(conn, result.processed)
            message_store.mark_error(conn, result.errors)
    except sa.exc.SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        reason = f"store failure: {type(cause).__name__}: {str(cause).splitlines()[0][:300]}"
        batch_ids = [r.id for r in rows]
        log.warning("batch of %d messages not stored (%s)", len(batch_ids), reason)
        try:
            with writer(engine).begin() as conn:
                if final_attempt:
                    message_store.mark_error(conn, dict.fromkeys(batch_ids, reason))
                else:
                    message_store.note_attempt(conn, batch_ids, reason)
        except sa.exc.SQLAlchemyError:
            log.error("could not record the failure either; messages stay received for a retry")
        if final_attempt:
            return BatchResult(errors=dict.fromkeys(batch_ids, reason))
        raise StoreError(reason) from exc
    if result.errors:
        log.info("%d of %d messages in error", len(result.errors), len(rows))
    return result
