"""Report upkeep: the rollups move with the records, as an essential plugin of the store hooks.

The pipeline knows nothing of reports; it calls ``hub_records_storing`` and
``hub_records_stored`` around each batch's upsert, in the batch's transaction, and
``hub_records_clearing`` before a practice's records are cleared; the patient index calls
``hub_patients_relinked`` when patients move to another enterprise id. Here those hooks mark dirty
every (practice, month) cell a write moves records out of or into (``hub.reports.rollups``):
the cells the batch's rows sat in before the write are read in ``hub_records_storing`` and
kept in the batch's stash, and marked, with the cells they sit in after it, in one statement
in ``hub_records_stored`` (one sorted insert a batch, as ``rollups.tracking`` does, so two
concurrent batches take the marks in the same order). Once the batch has committed,
``hub_records_committed`` wakes this process's background refresh (``hub.reports.background``),
which recomputes the marked cells in short transactions (``rollups.refresh_dirty``); a
report only reads.

Registered always (``hub.plugins.ESSENTIAL_PLUGINS``, name ``report-upkeep``): without it the
reports would go stale.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub import hookimpl

# background and rollups (SQLAlchemy) are imported in the hooks: every command registers this plugin
if TYPE_CHECKING:
    import sqlalchemy as sa

    from hub.hookspecs import RecordBatch

_CELLS_BEFORE = object()  # this plugin's key in RecordBatch.stash


@hookimpl
def hub_records_storing(conn: sa.Connection, batch: RecordBatch) -> None:
    from hub.reports import rollups

    batch.stash[_CELLS_BEFORE] = rollups.cells_of_kinds(conn, rollups.records_by_kind(batch))


@hookimpl
def hub_records_stored(conn: sa.Connection, batch: RecordBatch) -> None:
    from hub.reports import rollups

    before: set[rollups.Cell] = batch.stash.pop(_CELLS_BEFORE, set())
    rollups.mark_dirty(conn, before | rollups.cells_written_kinds(conn, rollups.records_by_kind(batch)))


@hookimpl
def hub_records_committed(practices: list[str]) -> None:
    from hub.reports import background

    background.wake()  # the background refresh of this process, if one runs, recomputes the marked cells


@hookimpl
def hub_patients_relinked(conn: sa.Connection, patients: list[tuple[str, str]]) -> None:
    from hub.reports import rollups

    items = [({"kind": "patient", "practice": practice, "source_id": source_id}, None)
             for practice, source_id in patients]
    rollups.mark_dirty(conn, rollups.cells_of(conn, items))


@hookimpl
def hub_records_clearing(conn: sa.Connection, practice: str) -> None:
    from hub.reports import rollups

    # the practice's records may come back in other months (its time zone changed): every cell it has now
    rollups.mark_dirty(conn, rollups.stored_cells(conn, practice))
