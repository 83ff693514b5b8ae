"""Rollups move with the records as batches land through the real pipeline: status changes, reprocessing."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from hub.pipeline.intake import receive
from hub.pipeline.replay import reprocess
from hub.plugins import load_plugins
from hub.reports import compute_report
from hub.reports.rollups import refresh_dirty
from hub.runtime import Runtime
from hub.store.engine import writer
from hub.store.practices import add_practice
from tests.support.json_records import plugin


@pytest.fixture
def hub_runtime(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    runtime = Runtime.create(database_url=database_url, plugins=load_plugins(extra=[plugin]), dispatcher="inline")
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "derm-east", "Derm East")
    return runtime


def _appt(source_id: str, start: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "appointment", "source_id": source_id, "patient_source_id": "MRN1", "provider_source_id": "DR1",
            "start": start, "duration_min": 30, "status": status, "service_line": "dermatology", **extra}


def _send(runtime: Runtime, records: list[dict[str, Any]]) -> None:
    receipts = receive(runtime, "derm-east", json.dumps(records).encode(), connector="json-records")
    assert all(r.outcome.accepted for r in receipts), [r.outcome.error for r in receipts]


def _values(runtime: Runtime, month: str) -> dict[str, Any]:
    refresh_dirty(runtime.engine)  # a report only reads: the cells the ingest marked, recomputed first
    report = compute_report(runtime.engine, by="site,month", plugins=runtime.plugins).to_dict()
    rows = {r["slice"]["month"]: r["values"] for r in report["rows"]}
    return rows.get(month, {})


def test_status_changes_and_reschedules_move_counts_between_cells(hub_runtime: Runtime) -> None:
    _send(hub_runtime, [{"kind": "patient", "source_id": "MRN1"},
                        _appt("A1", "2025-03-04T09:00:00-05:00", "booked"),
                        _appt("A2", "2025-03-05T09:00:00-05:00", "booked")])
    march = _values(hub_runtime, "2025-03")
    assert march["visit_volume"] == 0 and march["no_show_rate"] == 0.0
    _send(hub_runtime, [_appt("A1", "2025-03-04T09:00:00-05:00", "fulfilled"),
                        _appt("A2", "2025-03-05T09:00:00-05:00", "noshow")])
    march = _values(hub_runtime, "2025-03")
    assert march["visit_volume"] == 1 and march["new_patient_visits"] == 1 and march["no_show_rate"] == 0.5
    # rescheduled into April: March loses it, April gains it
    _send(hub_runtime, [_appt("A2", "2025-04-02T09:00:00-04:00", "fulfilled")])
    assert _values(hub_runtime, "2025-03")["no_show_rate"] == 0.0
    april = _values(hub_runtime, "2025-04")
    assert april["visit_volume"] == 1 and april["new_patient_visits"] == 0  # seen in March already
    before = compute_report(hub_runtime.engine, by="site,month", plugins=hub_runtime.plugins).to_dict()
    counts = reprocess(hub_runtime, practice="derm-east")
    assert counts["processed"] >= 3
    refresh_dirty(hub_runtime.engine)
    after = compute_report(hub_runtime.engine, by="site,month", plugins=hub_runtime.plugins).to_dict()
    assert before["rows"] == after["rows"]


def test_a_late_older_visit_makes_the_later_one_returning(hub_runtime: Runtime) -> None:
    _send(hub_runtime, [{"kind": "patient", "source_id": "MRN1"},
                        _appt("A5", "2025-06-10T09:00:00-04:00", "fulfilled")])
    assert _values(hub_runtime, "2025-06")["new_patient_visits"] == 1
    _send(hub_runtime, [_appt("A4", "2024-01-10T09:00:00-05:00", "fulfilled")])  # backfilled history
    assert _values(hub_runtime, "2025-06")["new_patient_visits"] == 0
    assert _values(hub_runtime, "2024-01")["new_patient_visits"] == 1


def test_rows_that_hang_on_another_row_move_its_month(hub_runtime: Runtime) -> None:
    """A later appointment moves its referral's funnel month; a later remittance its charge's month."""
    _send(hub_runtime, [{"kind": "patient", "source_id": "MRN1"},
                        {"kind": "referral", "source_id": "R1", "patient_source_id": "MRN1",
                         "received_on": "2025-02-20"},
                        {"kind": "charge", "source_id": "C1", "patient_source_id": "MRN1", "service_date": "2025-01-15",
                         "procedure_code": "99213", "amount": "100.00"}])
    # no appointment stored at the site yet: its referrals' scheduling is no data (not 0 %) until one is
    assert _values(hub_runtime, "2025-02")["referral_scheduled_rate"] is None
    _send(hub_runtime, [_appt("A9", "2025-03-04T09:00:00-05:00", "fulfilled", referral_source_id="R1"),
                        {"kind": "remittance", "source_id": "P1", "charge_source_id": "C1", "paid_amount": "60.00",
                         "paid_on": "2025-03-20"}])
    february = _values(hub_runtime, "2025-02")
    assert february["referral_scheduled_rate"] == 1.0 and february["referral_attended_rate"] == 1.0
    assert _values(hub_runtime, "2025-01")["payments"] == "60.00"
    # the charge's service date is corrected to February: its payment follows it
    _send(hub_runtime, [{"kind": "charge", "source_id": "C1", "service_date": "2025-02-03", "amount": "100.00"}])
    assert _values(hub_runtime, "2025-01").get("payments") in (None, "0.00")
    assert _values(hub_runtime, "2025-02")["payments"] == "60.00"


def test_a_cell_marked_while_a_refresh_runs_is_kept_for_the_next(database_url: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A refresh deletes only the mark of the cell it claimed: a mark made after that claim (an ingest
    landing meanwhile) survives it, so that change is recomputed by the next pass or refresh. Each
    cell is claimed and recomputed in a transaction of its own."""
    from hub.reports import rollups
    from hub.reports.tables import report_dirty
    from hub.store.engine import get_engine

    engine = get_engine(database_url)
    with writer(engine).begin() as conn:
        add_practice(conn, "alpha", "Alpha")
        rollups.mark_dirty(conn, {("alpha", "2025-01"), ("alpha", "2025-02")})
    real_refresh = rollups.refresh
    seen: list[set[Any]] = []

    def refresh_while_an_ingest_lands(conn: Any, cells: set[Any], **options: Any) -> int:
        seen.append(set(cells))
        rollups.mark_dirty(conn, {("alpha", "2025-01"), ("alpha", "2025-03")})
        return real_refresh(conn, cells, **options)

    monkeypatch.setattr(rollups, "refresh", refresh_while_an_ingest_lands)
    assert rollups.refresh_dirty(engine, passes=1) == 2
    assert seen == [{("alpha", "2025-01")}, {("alpha", "2025-02")}]
    with engine.connect() as conn:
        left = {tuple(r) for r in conn.execute(sa.select(report_dirty.c.practice, report_dirty.c.month))}
    assert left == {("alpha", "2025-01"), ("alpha", "2025-03")}
