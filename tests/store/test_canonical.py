"""Idempotent upserts, merge semantics, lineage and patient merges on SQLite and PostgreSQL."""

from decimal import Decimal

import sqlalchemy as sa

from hub.model import validate_record
from hub.store import canonical, get_engine, writer


def rec(kind, source_id, **fields):
    return validate_record({"kind": kind, "practice": "derm", "source_id": source_id, **fields})


def write(engine, items):
    with writer(engine).begin() as conn:
        canonical.upsert_records(conn, items)


def rows(engine, kind):
    with engine.connect() as conn:
        return canonical.fetch_records(conn, kind)


def test_same_records_twice_leave_one_row(database_url):
    engine = get_engine(database_url)
    items = [(rec("appointment", "A1", start="2025-03-04T09:00:00-05:00", status="booked"), 1),
             (rec("patient", "M1", family_name="Testperson"), 1)]
    write(engine, items)
    write(engine, items)
    assert len(rows(engine, "appointment")) == 1
    assert len(rows(engine, "patient")) == 1
    with engine.connect() as conn:
        assert canonical.lineage_of(conn, "appointment", "derm", "A1") == [1]


def test_missing_field_keeps_the_stored_value_and_newer_message_wins(database_url):
    engine = get_engine(database_url)
    write(engine, [(rec("provider", "P1", family_name="Okafor", npi="1234567893"), 1)])
    write(engine, [(rec("provider", "P1", specialty="dermatology"), 2)])  # no NPI in this feed
    (row,) = rows(engine, "provider")
    assert (row["npi"], row["specialty"], row["message_id"]) == ("1234567893", "dermatology", 2)
    # an older message replayed later does not overwrite the newer one
    write(engine, [(rec("provider", "P1", specialty="surgery"), 1)])
    assert rows(engine, "provider")[0]["specialty"] == "dermatology"
    with engine.connect() as conn:
        assert canonical.lineage_of(conn, "provider", "derm", "P1") == [1, 2]


def test_status_change_updates_in_place(database_url):
    engine = get_engine(database_url)
    write(engine, [(rec("appointment", "A1", start="2025-03-04T09:00:00-05:00", status="booked"), 1)])
    write(engine, [(rec("appointment", "A1", start="2025-03-04T09:00:00-05:00", status="cancelled",
                        cancel_reason="PT"), 2)])
    (row,) = rows(engine, "appointment")
    assert row["status"] == "cancelled" and row["cancel_reason"] == "PT"
    assert row["start"] == "2025-03-04T09:00:00-05:00"  # local time and offset kept as sent


def test_money_round_trips_exactly_and_sums_in_cents(database_url):
    engine = get_engine(database_url)
    amounts = ["0.10", "0.20", "1234567.89", "-5.05"]
    write(engine, [(rec("charge", f"C{i}", service_date="2025-01-02", amount=a), 1) for i, a in enumerate(amounts)])
    assert sorted(r["amount"] for r in rows(engine, "charge")) == sorted(Decimal(a) for a in amounts)
    from hub.model.tables import RECORD_TABLES

    with engine.connect() as conn:
        typed = conn.execute(sa.select(sa.func.sum(RECORD_TABLES["charge"].c.amount))).scalar_one()
        cents = conn.execute(sa.text("SELECT sum(amount) FROM charges")).scalar_one()
    assert typed == sum(Decimal(a) for a in amounts)  # the column type turns cents back into dollars
    assert int(cents) == cents == 123456314  # raw SQL sums whole cents, exactly


def test_patient_merge_repoints_records_now_and_later(database_url):
    engine = get_engine(database_url)
    write(engine, [(rec("patient", "OLD"), 1), (rec("patient", "NEW"), 1),
                   (rec("appointment", "A1", patient_source_id="OLD", start="2025-03-04T09:00:00-05:00",
                        status="booked"), 1)])
    write(engine, [(rec("patient_merge", "OLD>NEW", prior_source_id="OLD", surviving_source_id="NEW"), 2)])
    assert rows(engine, "appointment")[0]["patient_source_id"] == "NEW"
    # a record of the prior patient that arrives after the merge goes to the survivor too
    write(engine, [(rec("charge", "C1", patient_source_id="OLD", service_date="2025-03-04", amount="90.00"), 3)])
    assert rows(engine, "charge")[0]["patient_source_id"] == "NEW"
    assert {r["source_id"] for r in rows(engine, "patient")} == {"OLD", "NEW"}  # nothing is lost
    assert len(rows(engine, "patient_merge")) == 1


def test_the_same_record_twice_in_one_batch(database_url):
    engine = get_engine(database_url)
    write(engine, [(rec("appointment", "A1", start="2025-03-04T09:00:00-05:00", status="booked"), 1),
                   (rec("appointment", "A1", start="2025-03-04T09:00:00-05:00", status="arrived"), 2)])
    (row,) = rows(engine, "appointment")
    assert row["status"] == "arrived"


def test_two_writers_sharing_patients_wait_for_each_other_instead_of_deadlocking(pg_url):
    """Batches name their records in any order; the upsert writes them in one order, so a second
    transaction wanting rows the first holds waits (PostgreSQL would otherwise detect a deadlock
    and fail one of the batches)."""
    import threading

    engine = get_engine(pg_url)
    write(engine, [(rec("patient", "M1", family_name="One"), 1), (rec("patient", "M2", family_name="Two"), 1)])
    failures: list[BaseException] = []

    def second_writer() -> None:
        try:
            write(engine, [(rec("patient", "M2", family_name="B"), 3), (rec("patient", "M1", family_name="B"), 3)])
        except BaseException as exc:  # the test reports it
            failures.append(exc)

    with writer(engine).connect() as first:
        with first.begin():
            canonical.upsert_records(first, [(rec("patient", "M1", family_name="A"), 2)])  # holds M1
            thread = threading.Thread(target=second_writer)
            thread.start()
            thread.join(0.5)  # the second writer now waits for M1 (before this change: it held M2 first)
            canonical.upsert_records(first, [(rec("patient", "M2", family_name="A"), 2)])
        thread.join(30)
    assert not thread.is_alive() and failures == []
    assert {r["source_id"]: r["family_name"] for r in rows(engine, "patient")} == {"M1": "B", "M2": "B"}
