"""Which cells an ingest batch marks dirty: the look-ups behind them, and how SQLite runs them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from hub.hookspecs import RecordBatch
from hub.plugins import load_plugins
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


def _through_hooks(engine: sa.Engine, records: list[dict[str, Any]]) -> None:
    """As the pipeline stores a batch: the store hooks (remit-link, then the report upkeep) around the upsert."""
    hook = load_plugins().hook
    items = [(r, None) for r in records]
    batch = RecordBatch(items)
    with writer(engine).begin() as conn:
        hook.hub_records_storing(conn=conn, batch=batch)
        canonical.upsert_records(conn, items)
        hook.hub_records_stored(conn=conn, batch=batch)


def _practices(engine: sa.Engine, *slugs: str) -> None:
    with writer(engine).begin() as conn:
        for slug in slugs:
            add_practice(conn, slug, slug.title())


def test_a_batch_of_two_practices_marks_each_practices_own_months(database_url: str) -> None:
    """The same ids at two practices: charge C1 of east (March) moves to June, C1 of west (May) to July;
    appointment A1 of east (January) moves to February, A1 of west stays in October. Each practice's months
    before and after, and none of the other's."""
    engine = get_engine(database_url)
    _practices(engine, "east", "west")
    _through_hooks(engine, [
        {"kind": "charge", "practice": "east", "source_id": "C1", "service_date": dt.date(2025, 3, 5)},
        {"kind": "charge", "practice": "west", "source_id": "C1", "service_date": dt.date(2025, 5, 6)},
        {"kind": "appointment", "practice": "east", "source_id": "A1", "start": _at("2025-01-20"),
         "status": "booked"},
        {"kind": "appointment", "practice": "west", "source_id": "A1", "start": _at("2025-10-02"),
         "status": "booked"},
    ])
    _clear(engine)
    _through_hooks(engine, [
        {"kind": "appointment", "practice": "west", "source_id": "A1", "start": _at("2025-10-03"),
         "status": "fulfilled"},
        {"kind": "charge", "practice": "west", "source_id": "C1", "service_date": dt.date(2025, 7, 1)},
        {"kind": "charge", "practice": "east", "source_id": "C1", "service_date": dt.date(2025, 6, 30)},
        {"kind": "appointment", "practice": "east", "source_id": "A1", "start": _at("2025-02-03"),
         "status": "booked"},
    ])
    assert _dirty(engine) == {("east", "2025-01"), ("east", "2025-02"), ("east", "2025-03"), ("east", "2025-06"),
                              ("west", "2025-05"), ("west", "2025-07"), ("west", "2025-10")}


def test_a_slot_marks_its_month_and_the_three_before_and_an_encounter_without_a_start_its_stored_one(
        database_url: str) -> None:
    """A slot of May 2025 counts towards the third next available of February to May. An encounter sent
    again without its start keeps the stored one (August): August only, from the row as stored."""
    engine = get_engine(database_url)
    _practices(engine, "east")
    _through_hooks(engine, [{"kind": "encounter", "practice": "east", "source_id": "E1",
                             "start": _at("2025-08-14")}])
    _clear(engine)
    _through_hooks(engine, [
        {"kind": "slot", "practice": "east", "source_id": "S1", "start": _at("2025-05-02"), "duration_min": 30,
         "status": "free"},
        {"kind": "encounter", "practice": "east", "source_id": "E1", "status": "finished"},
    ])
    assert _dirty(engine) == {("east", "2025-02"), ("east", "2025-03"), ("east", "2025-04"), ("east", "2025-05"),
                              ("east", "2025-08")}


def test_a_patient_merge_marks_the_visits_of_both_patients(database_url: str) -> None:
    """P1 has an appointment in January, P2 an encounter in April: merging P1 into P2 marks both months."""
    engine = get_engine(database_url)
    _practices(engine, "east")
    _through_hooks(engine, [
        {"kind": "patient", "practice": "east", "source_id": "P1"},
        {"kind": "patient", "practice": "east", "source_id": "P2"},
        {"kind": "appointment", "practice": "east", "source_id": "A1", "patient_source_id": "P1",
         "start": _at("2025-01-08"), "status": "fulfilled"},
        {"kind": "encounter", "practice": "east", "source_id": "E1", "patient_source_id": "P2",
         "start": _at("2025-04-09")},
    ])
    _clear(engine)
    _through_hooks(engine, [{"kind": "patient_merge", "practice": "east", "source_id": "M1",
                             "prior_source_id": "P1", "surviving_source_id": "P2"}])
    assert _dirty(engine) == {("east", "2025-01"), ("east", "2025-04")}


def test_remittances_are_linked_by_claim_and_mark_their_charges_months(database_url: str) -> None:
    """Charge C1 (claim CL1, 99213, 4 August) is stored; a batch brings remittance R1 of CL1 for 99213 and
    no charge id, and charge C2 (claim CL2, 10 September) with R2 of CL2's line 1. R1 is linked to C1 and
    marks August, read through the stored charge; R2 to C2, whose September the batch marks itself. A
    batch without remittances links nothing."""
    engine = get_engine(database_url)
    _practices(engine, "east")
    _through_hooks(engine, [{"kind": "charge", "practice": "east", "source_id": "C1", "claim_id": "CL1",
                             "procedure_code": "99213", "service_date": dt.date(2025, 8, 4),
                             "amount": Decimal("120.00")}])
    _clear(engine)
    _through_hooks(engine, [
        {"kind": "remittance", "practice": "east", "source_id": "R1", "claim_id": "CL1", "procedure_code": "99213",
         "paid_amount": Decimal("80.00")},
        {"kind": "charge", "practice": "east", "source_id": "C2", "claim_id": "CL2", "claim_line": 1,
         "procedure_code": "11102", "service_date": dt.date(2025, 9, 10), "amount": Decimal("90.00")},
        {"kind": "remittance", "practice": "east", "source_id": "R2", "claim_id": "CL2", "claim_line": 1,
         "paid_amount": Decimal("50.00")},
    ])
    assert _dirty(engine) == {("east", "2025-08"), ("east", "2025-09")}
    with engine.connect() as conn:
        links: dict[str, str] = {r.source_id: r.charge_source_id
                                 for r in conn.execute(sa.text("SELECT source_id, charge_source_id FROM remittances"))}
    assert links == {"R1": "C1", "R2": "C2"}


def test_cells_written_reads_the_month_as_the_record_gives_it() -> None:
    """The month is the record's own (its local date): 31 March 22:00 at -05:00 is March, though April in
    UTC; a year before 1000 keeps its four digits; a date given as ISO text is read the same way; a
    record without its date names no month."""
    engine = get_engine("sqlite://")
    late = dt.datetime(2025, 3, 31, 22, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    items: list[tuple[dict[str, Any], None]] = [
        ({"kind": "appointment", "practice": "east", "source_id": "A1", "start": late}, None),
        ({"kind": "charge", "practice": "east", "source_id": "C1", "service_date": dt.date(999, 1, 5)}, None),
        ({"kind": "charge", "practice": "east", "source_id": "C2", "service_date": "2024-11-30"}, None),
        ({"kind": "referral", "practice": "east", "source_id": "R1", "received_on": None}, None),
        ({"kind": "encounter", "practice": "west", "source_id": "E1",
          "start": dt.datetime(2026, 12, 1, 0, 30, tzinfo=dt.UTC)}, None)]
    with engine.connect() as conn:
        assert rollups.cells_written(conn, items) == {("east", "2025-03"), ("east", "0999-01"), ("east", "2024-11"),
                                                      ("west", "2026-12")}
