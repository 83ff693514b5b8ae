"""Which cells an ingest batch marks dirty: the look-ups behind them, and how SQLite runs them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from hub.reports import rollups
from hub.store import canonical
from hub.store.engine import get_engine, keys_as_json, writer
from hub.store.practices import add_practice


def _write(engine: sa.Engine, records: list[dict[str, Any]]) -> None:
    items = [(r, None) for r in records]
    with writer(engine).begin() as conn, rollups.tracking(conn, items):
        canonical.upsert_records(conn, items)


def _dirty(engine: sa.Engine) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        return {(p, m) for p, m in conn.execute(sa.text("SELECT practice, month FROM report_dirty"))}


def _clear(engine: sa.Engine) -> None:
    with writer(engine).begin() as conn:
        conn.execute(sa.text("DELETE FROM report_dirty"))


def _at(day: str) -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T09:00:00-05:00")


def test_an_appointment_marks_the_months_of_the_charges_that_hang_on_it(database_url: str) -> None:
    """Appointment A1 (January) has encounter E1, whose charge C1 is of March; charge C2 names A1 as its
    visit (April). Writing A1 again, in the same month, marks January and both charges' months, read
    through the stored rows; a charge of another encounter (June) is not marked."""
    engine = get_engine(database_url)
    with writer(engine).begin() as conn:
        add_practice(conn, "east", "East")
    _write(engine, [
        {"kind": "appointment", "practice": "east", "source_id": "A1", "start": _at("2025-01-10")},
        {"kind": "encounter", "practice": "east", "source_id": "E1", "appointment_source_id": "A1",
         "start": _at("2025-01-10")},
        {"kind": "encounter", "practice": "east", "source_id": "E2", "start": _at("2025-06-02")},
        {"kind": "charge", "practice": "east", "source_id": "C1", "encounter_source_id": "E1",
         "service_date": dt.date(2025, 3, 5)},
        {"kind": "charge", "practice": "east", "source_id": "C2", "encounter_source_id": "A1",
         "service_date": dt.date(2025, 4, 7)},
        {"kind": "charge", "practice": "east", "source_id": "C3", "encounter_source_id": "E2",
         "service_date": dt.date(2025, 6, 2)},
    ])
    _clear(engine)
    _write(engine, [{"kind": "appointment", "practice": "east", "source_id": "A1", "start": _at("2025-01-11")}])
    assert _dirty(engine) == {("east", "2025-01"), ("east", "2025-03"), ("east", "2025-04")}


def test_a_rescheduled_appointment_and_a_remittance_mark_before_and_after(database_url: str) -> None:
    """A1 moves from February to May: both months. A remittance of charge C1 (stored, August) marks August;
    one whose charge is in the same batch marks that charge's month once, from the record itself."""
    engine = get_engine(database_url)
    with writer(engine).begin() as conn:
        add_practice(conn, "east", "East")
    _write(engine, [
        {"kind": "appointment", "practice": "east", "source_id": "A1", "start": _at("2025-02-10")},
        {"kind": "charge", "practice": "east", "source_id": "C1", "service_date": dt.date(2025, 8, 1)},
    ])
    _clear(engine)
    _write(engine, [
        {"kind": "appointment", "practice": "east", "source_id": "A1", "start": _at("2025-05-10")},
        {"kind": "remittance", "practice": "east", "source_id": "R1", "charge_source_id": "C1"},
        {"kind": "charge", "practice": "east", "source_id": "C2", "service_date": dt.date(2025, 9, 3)},
        {"kind": "remittance", "practice": "east", "source_id": "R2", "charge_source_id": "C2"},
    ])
    assert _dirty(engine) == {("east", "2025-02"), ("east", "2025-05"), ("east", "2025-08"), ("east", "2025-09")}


def test_the_sqlite_look_ups_probe_indexes_and_never_read_a_whole_table(tmp_path: Any) -> None:
    """Each look-up reads rows by the batch's keys: no record table scanned, and no search bound by the
    practice alone (which reads every row of the practice, as a join of charges to encounters once did)."""
    engine = get_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    with engine.connect() as conn:
        for name, sql in rollups._lookups("sqlite").items():
            plan = [row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {keys_as_json(sql)}",
                                                           {"p": "east", "keys": "[]"})]
            scans = [step for step in plan if step.startswith("SCAN") and "json_each" not in step]
            assert not scans, (name, plan)
            by_practice_alone = [step for step in plan if step.startswith("SEARCH") and step.endswith("(practice=?)")]
            assert not by_practice_alone, (name, plan)
