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


def test_a_time_at_the_start_of_year_one_east_of_utc_is_stored_as_sent(database_url):
    # it has no UTC time (it would fall in year 0): a field needs only its text, which the store keeps as sent
    engine = get_engine(database_url)
    write(engine, [(rec("appointment", "A1", start="0001-01-01T00:30:00+05:00", status="booked",
                        event_time="2025-03-01T08:00:00-05:00"), 1)])
    (row,) = rows(engine, "appointment")
    assert row["start"] == "0001-01-01T00:30:00+05:00"


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


def test_the_latest_event_wins_whatever_the_arrival_order(database_url):
    """A completion (event at 10:00) that arrives before its booking (event at 08:00, a later
    message id): the appointment stays fulfilled, and its start comes from the latest event."""
    engine = get_engine(database_url)
    write(engine, [(rec("appointment", "A1", start="2025-03-04T09:30:00-06:00", status="fulfilled",
                        event_time="2025-03-04T10:00:00-06:00"), 5)])
    write(engine, [(rec("appointment", "A1", start="2025-03-04T09:00:00-06:00", status="booked",
                        visit_type="NEW", event_time="2025-03-01T08:00:00-06:00"), 9)])
    (row,) = rows(engine, "appointment")
    assert (row["status"], row["start"]) == ("fulfilled", "2025-03-04T09:30:00-06:00")
    assert row["visit_type"] == "NEW"  # only the booking carried it: the value is kept
    assert (row["event_time"], row["message_id"]) == ("2025-03-04T10:00:00-06:00", 5)
    with engine.connect() as conn:
        assert canonical.lineage_of(conn, "appointment", "derm", "A1") == [5, 9]


def test_a_newer_event_without_a_field_keeps_the_older_events_value(database_url):
    engine = get_engine(database_url)
    # the newer message (no NPI) is processed first, the older one (with the NPI) after it
    write(engine, [(rec("provider", "P1", family_name="Okafor-Lee", event_time="2025-05-02T10:00:00+00:00"), 1)])
    write(engine, [(rec("provider", "P1", family_name="Okafor", npi="1234567893",
                        event_time="2025-05-01T10:00:00+00:00"), 2)])
    (row,) = rows(engine, "provider")
    assert (row["npi"], row["family_name"]) == ("1234567893", "Okafor-Lee")


def test_events_at_the_same_time_are_ordered_by_message(database_url):
    engine = get_engine(database_url)
    at = "2025-03-01T00:00:00-06:00"  # two rows of one export, both dated by the export
    write(engine, [(rec("appointment", "A1", start="2025-03-04T09:00:00-06:00", status="cancelled", event_time=at), 8)])
    write(engine, [(rec("appointment", "A1", start="2025-03-04T09:00:00-06:00", status="booked", event_time=at), 7)])
    assert rows(engine, "appointment")[0]["status"] == "cancelled"
    # the same message reprocessed (a mapping fixed since) rewrites its own values
    write(engine, [(rec("appointment", "A1", start="2025-03-04T09:00:00-06:00", status="noshow", event_time=at), 8)])
    assert rows(engine, "appointment")[0]["status"] == "noshow"


def test_one_batch_folds_by_event_not_by_position(database_url):
    engine = get_engine(database_url)
    write(engine, [(rec("appointment", "A1", start="2025-03-04T09:00:00-06:00", status="cancelled",
                        cancel_reason="PT", event_time="2025-03-03T12:00:00-06:00"), 1),
                   (rec("appointment", "A1", start="2025-03-04T09:00:00-06:00", status="booked",
                        event_time="2025-02-20T12:00:00-06:00"), 2)])
    (row,) = rows(engine, "appointment")
    assert (row["status"], row["cancel_reason"], row["message_id"]) == ("cancelled", "PT", 1)


def test_records_with_the_same_keys_write_the_fields_each_carries(database_url):
    """Records with one list of keys, some of them None: a None is a field the message does not carry,
    whichever record of that list came first."""
    engine = get_engine(database_url)
    keys = dict.fromkeys(("family_name", "given_name", "npi", "specialty"))
    write(engine, [(rec("provider", "P7", **{**keys, "family_name": "Okafor", "given_name": "Ada",
                                            "npi": "1234567893", "specialty": "dermatology"}), 1)])
    write(engine, [(rec("provider", "P7", **{**keys, "specialty": "surgery"}), 2),  # carries a specialty only
                   (rec("provider", "P8", **{**keys, "family_name": "Mensah"}), 2)])
    write(engine, [(rec("provider", "P8", **{**keys, "family_name": "Mensah", "given_name": "Kofi",
                                            "npi": "1245319599", "specialty": "surgery"}), 3)])
    p7, p8 = rows(engine, "provider")
    assert (p7["family_name"], p7["given_name"], p7["npi"], p7["specialty"]) == ("Okafor", "Ada", "1234567893",
                                                                                 "surgery")
    assert (p8["family_name"], p8["given_name"], p8["npi"], p8["specialty"]) == ("Mensah", "Kofi", "1245319599",
                                                                                 "surgery")
    assert (p7["message_id"], p8["message_id"]) == (2, 3)


def test_a_batch_of_several_statement_chunks_writes_each_record_in_turn(database_url):
    """More records of one shape than a multi-row statement takes (``canonical.CHUNK``), and more lineage
    rows: every chunk and the rest written, in the batch's order, and a stored newer field kept."""
    engine = get_engine(database_url)
    count = 2 * canonical.CHUNK + 3
    # P001 was written by a later event than the batch's: its name stays; the others are new
    write(engine, [(rec("provider", "P001", family_name="Later", event_time="2025-06-01T08:00:00-05:00"), 9)])
    write(engine, [(rec("provider", f"P{i:03d}", family_name=f"Name{i}", npi="1234567893",
                        event_time="2025-05-01T08:00:00-05:00"), 100 + i) for i in range(count)])
    found = rows(engine, "provider")
    assert [r["source_id"] for r in found] == [f"P{i:03d}" for i in range(count)]
    assert found[1]["family_name"] == "Later" and found[1]["npi"] == "1234567893"
    assert found[1]["message_id"] == 9  # the row's latest event is still the earlier write's
    assert [r["family_name"] for r in found[2:]] == [f"Name{i}" for i in range(2, count)]
    assert [r["message_id"] for r in found[2:]] == [100 + i for i in range(2, count)]
    with engine.connect() as conn:
        assert canonical.lineage_of(conn, "provider", "derm", "P001") == [9, 101]
        assert canonical.lineage_of(conn, "provider", "derm", f"P{count - 1:03d}") == [100 + count - 1]
        lineage = conn.execute(sa.text("SELECT COUNT(*) FROM lineage")).scalar_one()
        if engine.dialect.name == "sqlite":  # one writer: rows take their ids in the batch's order
            ids = conn.execute(sa.text("SELECT source_id FROM providers ORDER BY id")).scalars().all()
            assert ids == ["P001", "P000"] + [f"P{i:03d}" for i in range(2, count)]
    assert lineage == count + 1
