"""Any arrival order and any split into batches leave the same canonical store (issue #13, item 1).

A fixed set of synthetic HL7 v2.5.1 messages about a few appointments and patients of one
practice (bookings, a reschedule, a completion, a cancellation with its reason, a no-show,
patient updates with and without optional fields, a name change, charges and a correction,
a merge of one MRN into another with records of the prior MRN before and after it) is sent
in an order and a split into batches that hypothesis draws. Every canonical row must equal
the row of a reference run (the messages in event order, one batch), and a few facts
written down from the messages themselves must hold, so the test fails even if every
order were wrong alike.

Columns that name stored messages (``id``, ``message_id``, ``stamp``, ``*__stamp``) differ
between runs by construction and are left out; ``event_time`` is compared. Lineage is
compared as (kind, practice, source id, MSH-10 of the message).

Every message about a record has its own event time: two events at the same time are
ordered by message id, that is by arrival, which is what this test varies.

Two ways in: (a) inline, the test choosing the arrival order (message ids), the batches and
the order they are processed in; (b) the rq dispatcher and two ``hub worker --burst``
processes started together, with small jobs, so batches run side by side. The KPI report
(aggregates by site and month) must also equal the reference's. A deterministic test of the
race (b) found on PostgreSQL, a merge and a record of the prior MRN written at once, closes
the file.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.model import validate_record
from hub.model.tables import RECORD_TABLES, STAMP_SUFFIX, lineage, messages
from hub.pipeline.intake import Arrival, receive_many
from hub.pipeline.process import process_messages
from hub.reports import compute_report
from hub.reports.rollups import refresh_dirty
from hub.runtime import Runtime
from hub.store import canonical
from hub.store.engine import dispose_engines, get_engine, writer
from hub.store.practices import add_practice
from tests.pipeline.test_rq_worker import start_worker, worker_env

PRACTICE = "derm"
ZONE = "America/Chicago"  # CST (-06:00) until 9 March 2025, CDT (-05:00) after
NPI_CARTER, NPI_LEE = "1234567893", "1245319599"

# ------------------------------------------------------------------ the messages (synthetic)
MSH = "MSH|^~\\&|DERMPM|NORTHDERM|MSOHUB|MSO|{time}||{type}|{control}|P|2.5.1"


def seg(name: str, fields: dict[int, str]) -> str:
    """A segment from {field number: value}; fields not given are empty."""
    return "|".join([name] + [fields.get(i, "") for i in range(1, max(fields) + 1)])


def pid(mrn: str, name: str, *, birth: str, sex: str, postal: str = "", phone: str = "") -> str:
    return seg("PID", {1: "1", 3: f"{mrn}^^^NORTHDERM^MR", 5: name, 7: birth, 8: sex,
                       11: f"^^^^{postal}" if postal else "", 13: phone})


def carter(npi: bool = True) -> str:
    return f"{NPI_CARTER}^Carter^Jordan" + ("^^^^^^NPI^^^^NPI" if npi else "")


def lee(npi: bool = True) -> str:
    return f"{NPI_LEE}^Lee^Pat" + ("^^^^^^NPI^^^^NPI" if npi else "")


def siu(event: str, control: str, time_: str, appointment: str, patient: str, *, start: str, minutes: int,
        visit: str, status: str, reason: str = "", provider: str | None = None) -> str:
    """SIU without EVN (as v2.5.1 defines it): the event time is MSH-7. ``provider``: the AIP-3
    person (with or without the NPI identifier type), or no AIP at all."""
    segments = [
        MSH.format(time=time_, type=f"SIU^{event}^SIU_S12", control=control),
        seg("SCH", {1: f"PL-{appointment}", 2: appointment, 6: reason, 7: visit, 9: str(minutes), 10: "min",
                    11: f"^^{minutes}^{start}", 25: status}),
        patient,
        seg("RGS", {1: "1"}),
        seg("AIS", {1: "1", 3: "99213^Office visit^CPT", 4: start, 6: str(minutes), 7: "min"}),
        seg("AIL", {1: "1", 3: "NDMAIN^^^NORTHDERM"}),
    ]
    if provider:
        segments.append(seg("AIP", {1: "1", 3: provider, 4: "MD"}))
    return "\r".join(segments)


def adt(event: str, control: str, time_: str, *rest: str) -> str:
    structure = {"A08": "ADT_A01", "A40": "ADT_A39"}[event]
    return "\r".join([MSH.format(time=time_, type=f"ADT^{event}^{structure}", control=control),
                      seg("EVN", {1: event, 2: time_}), *rest])


def dft(control: str, time_: str, patient: str, visit: str, *ft1s: str) -> str:
    return "\r".join([MSH.format(time=time_, type="DFT^P03^DFT_P03", control=control),
                      seg("EVN", {1: "P03", 2: time_}), patient,
                      seg("PV1", {1: "1", 2: "O", 3: "NDMAIN^^^NORTHDERM", 7: carter(), 19: visit}),
                      *ft1s,
                      seg("IN1", {1: "1", 2: "AETPPO", 3: "AET01", 4: "AETNA PPO", 36: "W0000001"})])


def ft1(transaction: str, service_date: str, code: str, amount: str, modifiers: str = "") -> str:
    return seg("FT1", {1: "1", 2: transaction, 4: service_date, 5: service_date, 6: "CG", 7: code, 10: "1",
                       11: amount, 19: "L98.9", 20: carter(), 25: code, 26: modifiers})


DOE = dict(birth="19800101", sex="F")
ROE = dict(birth="19750615", sex="M")
OLD_NAME, NEW_NAME = "Doe^Sam", "Doe-Smith^Sam"

# (MSH-10, event time as sent, message) in event order. MRN1 survives the merge of MRN9 (the same
# person registered twice); MRN2 is another patient. A1: booked, rescheduled, completed; A2:
# booked, cancelled; A3: booked, no-show; A4: booked for MRN9 before the merge, rescheduled under
# MRN9 after it.
EVENTS: list[tuple[str, str, str]] = [
    ("M01", "20250301080000-0600", adt("A08", "M01", "20250301080000-0600",
                                       pid("MRN1", OLD_NAME, **DOE, postal="62701", phone="^PRN^PH^^1^217^5550100"))),
    ("M02", "20250301090000-0600", siu("S12", "M02", "20250301090000-0600", "A1", pid("MRN1", OLD_NAME, **DOE),
                                       start="20250310090000-0500", minutes=30, visit="NP", status="Booked",
                                       provider=carter())),
    ("M03", "20250303100000-0600", siu("S12", "M03", "20250303100000-0600", "A2", pid("MRN2", "Roe^Alex", **ROE),
                                       start="20250314110000-0500", minutes=30, visit="NP", status="Booked",
                                       provider=lee())),
    ("M04", "20250304110000-0600", siu("S12", "M04", "20250304110000-0600", "A3", pid("MRN2", "Roe^Alex", **ROE),
                                       start="20250311140000-0500", minutes=15, visit="FU", status="Booked",
                                       provider=carter())),
    # the reschedule names no provider: A1's provider and NPI stay those of the booking
    ("M05", "20250305093000-0600", siu("S13", "M05", "20250305093000-0600", "A1", pid("MRN1", OLD_NAME, **DOE),
                                       start="20250312100000-0500", minutes=45, visit="NP", status="Booked")),
    # the cancellation names the provider without the NPI identifier type
    ("M06", "20250305160000-0600", siu("S15", "M06", "20250305160000-0600", "A2", pid("MRN2", "Roe^Alex", **ROE),
                                       start="20250314110000-0500", minutes=30, visit="NP", status="Cancelled",
                                       reason="PTREQ^Patient request", provider=lee(npi=False))),
    # the name changes; no phone, no postal code this time
    ("M07", "20250306120000-0600", adt("A08", "M07", "20250306120000-0600", pid("MRN1", NEW_NAME, **DOE))),
    ("M08", "20250307081500-0600", siu("S12", "M08", "20250307081500-0600", "A4", pid("MRN9", OLD_NAME, **DOE),
                                       start="20250317083000-0500", minutes=30, visit="FU", status="Booked",
                                       provider=carter())),
    ("M09", "20250308130000-0600", adt("A40", "M09", "20250308130000-0600", pid("MRN1", NEW_NAME, **DOE),
                                       seg("MRG", {1: "MRN9^^^NORTHDERM^MR"}))),
    # after the merge, a system that still knows the prior MRN
    ("M10", "20250310074500-0500", siu("S13", "M10", "20250310074500-0500", "A4", pid("MRN9", OLD_NAME, **DOE),
                                       start="20250318083000-0500", minutes=30, visit="FU", status="Booked")),
    ("M11", "20250310090000-0500", dft("M11", "20250310090000-0500", pid("MRN9", OLD_NAME, **DOE), "V9",
                                       ft1("TX201", "20250307", "99213", "95.00"))),
    ("M12", "20250311150000-0500", siu("S26", "M12", "20250311150000-0500", "A3", pid("MRN2", "Roe^Alex", **ROE),
                                       start="20250311140000-0500", minutes=15, visit="FU", status="Noshow")),
    ("M13", "20250312110000-0500", siu("S14", "M13", "20250312110000-0500", "A1", pid("MRN1", NEW_NAME, **DOE),
                                       start="20250312100000-0500", minutes=45, visit="NP", status="Complete",
                                       provider=carter(npi=False))),
    ("M14", "20250312120000-0500", dft("M14", "20250312120000-0500", pid("MRN1", NEW_NAME, **DOE), "V1",
                                       ft1("TX101", "20250312", "99214", "150.00"),
                                       ft1("TX102", "20250312", "11102", "145.00", modifiers="59"))),
    ("M15", "20250313090000-0500", adt("A08", "M15", "20250313090000-0500",
                                       pid("MRN2", "Roe^Alex", **ROE, postal="62702"))),
    # a corrected amount for TX101
    ("M16", "20250313100000-0500", dft("M16", "20250313100000-0500", pid("MRN1", NEW_NAME, **DOE), "V1",
                                       ft1("TX101", "20250312", "99214", "160.00"))),
]
CONTROLS = [control for control, _, _ in EVENTS]
RAW = [text.encode() for _, _, text in EVENTS]
# The messages are in event order, each at its own moment.
assert [dt.datetime.strptime(t, "%Y%m%d%H%M%S%z") for _, t, _ in EVENTS] == \
    sorted({dt.datetime.strptime(t, "%Y%m%d%H%M%S%z") for _, t, _ in EVENTS})


# ------------------------------------------------------------------ stores and runs
class Stores:
    """A fresh, migrated store per run: a copy of an empty migrated SQLite file, or the test's
    PostgreSQL database with every table emptied (migrating anew each time would cost seconds)."""

    def __init__(self, database_url: str, folder: Path) -> None:
        self.base, self.folder, self.runs = database_url, folder, 0
        self.sqlite = database_url.startswith("sqlite")
        get_engine(database_url)  # migrates the template (SQLite) or the database (PostgreSQL)

    def fresh(self) -> str:
        self.runs += 1
        if self.sqlite:
            dispose_engines()  # the previous run's pool: one file at a time
            url = f"sqlite:///{self.folder / f'run{self.runs}.db'}"
            with closing(sqlite3.connect(self.base.removeprefix("sqlite:///"))) as source, \
                    closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as target:
                source.backup(target)  # a consistent copy whatever the journal mode
        else:
            url = self.base
            engine = get_engine(url)
            with engine.begin() as conn:  # a few rows each: DELETE is faster than TRUNCATE here
                for name in sa.inspect(conn).get_table_names():
                    if name != "alembic_version":
                        conn.execute(sa.text(f'DELETE FROM "{name}"'))
        with writer(get_engine(url)).begin() as conn:
            add_practice(conn, PRACTICE, "North Derm", timezone=ZONE)
        return url


class Held:
    """A dispatcher that only notes what it was given: the test decides when and in which
    batches the stored messages are processed."""

    name = "held"

    def __init__(self) -> None:
        self.ids: list[int] = []

    def submit(self, message_ids: Sequence[int]) -> None:
        self.ids.extend(message_ids)

    def describe(self) -> dict[str, object]:
        return {"kind": "held", "ok": True}


def store(runtime: Runtime, arrival: Sequence[int]) -> dict[int, int]:
    """Save the messages in the order of ``arrival`` (one transaction, as a burst on one
    connection would); message index → message id."""
    receipts = receive_many(runtime, PRACTICE, [Arrival(RAW[i], f"{CONTROLS[i]}.hl7") for i in arrival])
    ids = {}
    for i, (receipt,) in zip(arrival, receipts, strict=True):
        assert receipt.status == "accepted" and receipt.outcome.message_id is not None
        ids[i] = receipt.outcome.message_id
    return ids


def run_inline(url: str, arrival: Sequence[int], batches: Sequence[Sequence[int]]) -> Runtime:
    runtime = Runtime.create(database_url=url, dispatcher="inline")
    runtime.dispatcher = Held()
    ids = store(runtime, arrival)
    for batch in batches:
        result = process_messages(runtime, [ids[i] for i in batch])
        assert not result.errors, sorted(result.errors.values())
    return runtime


IGNORED = ("id", "message_id", "updated_at", "stamp")


def snapshot(engine: sa.Engine) -> dict[str, Any]:
    """Every canonical row (without the columns that name stored messages), the lineage by
    control id, and the messages' statuses."""
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        for kind, table in RECORD_TABLES.items():
            columns = [c for c in table.c if c.name not in IGNORED and not c.name.endswith(STAMP_SUFFIX)]
            rows = conn.execute(sa.select(*columns).order_by(table.c.practice, table.c.source_id))
            out[kind] = {(r.practice, r.source_id): dict(r._mapping) for r in rows}
        out["lineage"] = set(conn.execute(
            sa.select(lineage.c.kind, lineage.c.practice, lineage.c.source_id, messages.c.control_id)
            .join(messages, messages.c.id == lineage.c.message_id)).all())
        out["statuses"] = sorted(conn.execute(sa.select(messages.c.control_id, messages.c.status)).all())
    return out


def differences(expected: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """Where two snapshots differ, by table, record and column (synthetic data only)."""
    found = []
    for part in expected:
        want, have = expected[part], got[part]
        if part in RECORD_TABLES:
            for key in sorted(want.keys() | have.keys()):
                if key not in want or key not in have:
                    found.append(f"{part} {key}: {'missing' if key not in have else 'unexpected'}")
                    continue
                for column, value in want[key].items():
                    if have[key][column] != value:
                        found.append(f"{part} {key[1]}.{column}: reference {value!r}, got {have[key][column]!r}")
        elif want != have:
            extra, lost = (sorted(have - want), sorted(want - have)) if isinstance(want, set) else (have, want)
            found.append(f"{part}: got {extra}, reference {lost}")
    return found


def kpis(runtime: Runtime) -> list[Any]:
    refresh_dirty(runtime.engine)  # a report only reads: the marked cells are recomputed first
    return compute_report(runtime.engine, by="site,month", plugins=runtime.plugins).to_dict()["rows"]


@pytest.fixture
def reference(database_url: str, tmp_path: Path) -> Iterator[tuple[Stores, dict[str, Any], list[Any]]]:
    """The stores of this test and the reference run: event order, one batch."""
    stores = Stores(database_url, tmp_path)
    everything = list(range(len(EVENTS)))
    runtime = run_inline(stores.fresh(), everything, [everything])
    expected = snapshot(runtime.engine)
    check_facts(expected)
    report = kpis(runtime)
    (march,) = [row["values"] for row in report if row["slice"] == {"site": PRACTICE, "month": "2025-03"}]
    # four appointments: A1 seen, A2 cancelled, A3 no-show, A4 booked; charges 160 (corrected) + 145 + 95
    assert (march["visit_volume"], march["no_show_rate"], march["cancellation_rate"]) == (1, 0.25, 0.25)
    assert Decimal(str(march["gross_charges"])) == Decimal("400")
    yield stores, expected, report
    dispose_engines()


# ------------------------------------------------------------------ hand-written facts
def check_facts(s: dict[str, Any]) -> None:
    """What the messages say, read off them by hand (not off any run)."""
    appointments = {key[1]: row for key, row in s["appointment"].items()}
    assert set(appointments) == {"A1", "A2", "A3", "A4"}
    a1, a2, a3, a4 = (appointments[k] for k in ("A1", "A2", "A3", "A4"))
    # booked (M02), rescheduled to the 12th at 10:00 for 45 minutes (M05), completed (M13)
    assert (a1["status"], a1["start"], a1["duration_min"]) == ("fulfilled", "2025-03-12T10:00:00-05:00", 45)
    # only the booking names the NPI; the reschedule names no provider, the completion no NPI
    assert (a1["provider_source_id"], a1["provider_npi"]) == (NPI_CARTER, NPI_CARTER)
    assert a1["booked_at"] == "2025-03-01T09:00:00-06:00"
    assert a1["event_time"] == "2025-03-12T11:00:00-05:00"
    assert (a2["status"], a2["cancel_reason"], a2["provider_npi"]) == ("cancelled", "PTREQ", NPI_LEE)
    assert a2["cancelled_at"] == "2025-03-05T16:00:00-06:00"
    assert (a3["status"], a3["start"], a3["provider_npi"]) == ("noshow", "2025-03-11T14:00:00-05:00", NPI_CARTER)
    # booked for the prior MRN before the merge, rescheduled under it after: the survivor's now
    assert (a4["patient_source_id"], a4["start"], a4["provider_npi"]) == \
        ("MRN1", "2025-03-18T08:30:00-05:00", NPI_CARTER)
    patients = {key[1]: row for key, row in s["patient"].items()}
    mrn1 = patients["MRN1"]
    # the later name (M07 on); phone and postal code only in M01, absent later: kept
    assert (mrn1["family_name"], mrn1["given_name"]) == ("Doe-Smith", "Sam")
    assert (mrn1["phone"], mrn1["postal_code"]) == ("2175550100", "62701")
    assert mrn1["event_time"] == "2025-03-13T10:00:00-05:00"  # M16, its latest message
    assert patients["MRN2"]["postal_code"] == "62702"
    assert set(patients) == {"MRN1", "MRN2", "MRN9"}  # the prior MRN's own row stays
    charges = {key[1]: row for key, row in s["charge"].items()}
    assert {k: (c["amount"], c["patient_source_id"]) for k, c in charges.items()} == {
        "TX101": (Decimal("160.00"), "MRN1"),  # M16 corrects M14
        "TX102": (Decimal("145.00"), "MRN1"),
        "TX201": (Decimal("95.00"), "MRN1"),  # sent under the prior MRN after the merge
    }
    coverages = {key[1]: row["patient_source_id"] for key, row in s["coverage"].items()}
    assert coverages == {"MRN1:coverage:AET01": "MRN1", "MRN9:coverage:AET01": "MRN1"}
    providers = {key[1]: row["npi"] for key, row in s["provider"].items()}
    assert providers == {NPI_CARTER: NPI_CARTER, NPI_LEE: NPI_LEE}
    assert [(r["prior_source_id"], r["surviving_source_id"]) for r in s["patient_merge"].values()] == \
        [("MRN9", "MRN1")]
    for kind in ("appointment", "charge", "coverage"):
        assert all(r["patient_source_id"] != "MRN9" for r in s[kind].values())
    controls = {m for kind, _, source_id, m in s["lineage"] if (kind, source_id) == ("appointment", "A1")}
    assert controls == {"M02", "M05", "M13"}
    assert {m for _, _, _, m in s["lineage"]} == set(CONTROLS)
    assert s["statuses"] == [(c, "processed") for c in CONTROLS]


# ------------------------------------------------------------------ (a) inline, batches chosen here
@st.composite
def plans(draw: st.DrawFn) -> tuple[list[int], list[list[int]]]:
    """An arrival order, its split into batches, and the order the batches are processed in."""
    arrival = draw(st.permutations(range(len(EVENTS))))
    cuts = sorted(draw(st.sets(st.integers(1, len(EVENTS) - 1), max_size=len(EVENTS) - 1)))
    batches = [arrival[a:b] for a, b in zip([0, *cuts], [*cuts, len(EVENTS)], strict=True)]
    return arrival, draw(st.permutations(batches))


INLINE = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_any_arrival_order_and_batch_split_leaves_the_same_store(reference) -> None:
    stores, expected, expected_kpis = reference

    @INLINE
    @given(plans())
    def check(plan: tuple[list[int], list[list[int]]]) -> None:
        arrival, batches = plan
        runtime = run_inline(stores.fresh(), arrival, batches)
        assert differences(expected, snapshot(runtime.engine)) == []
        assert kpis(runtime) == expected_kpis

    check()


# ------------------------------------------------------------------ (b) two rq workers at once
@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[int], list[int], int]:
    """An arrival order, its split into payloads (each saved and enqueued as it comes), and the
    queue's batch size."""
    arrival = draw(st.permutations(range(len(EVENTS))))
    cuts = sorted(draw(st.sets(st.integers(1, len(EVENTS) - 1), max_size=4)))
    return arrival, cuts, draw(st.integers(2, 4))


WORKERS = settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.redis
def test_two_rq_workers_leave_the_same_store(reference, redis_url: str) -> None:
    stores, expected, expected_kpis = reference

    @WORKERS
    @given(deliveries())
    def check(delivery: tuple[list[int], list[int], int]) -> None:
        arrival, cuts, size = delivery
        url = stores.fresh()
        with pytest.MonkeyPatch.context() as env:
            env.setenv("HUB_REDIS_URL", redis_url)
            env.setenv("HUB_BATCH_SIZE", str(size))  # the dispatcher cuts each payload's messages in jobs of this size
            runtime = Runtime.create(database_url=url, dispatcher="rq")
            for a, b in zip([0, *cuts], [*cuts, len(EVENTS)], strict=True):
                store(runtime, arrival[a:b])
            # started together, they take the queue's jobs side by side (no artificial slowness: the
            # transactions, where batches can race, are then most of each job's time)
            workers = [start_worker(worker_env(url, redis_url, HUB_BATCH_SIZE=str(size)), "--burst")
                       for _ in range(2)]
            for worker in workers:
                out, _ = worker.communicate(timeout=120)
                assert worker.returncode == 0, out.decode()[-2000:]
        assert differences(expected, snapshot(runtime.engine)) == []
        assert kpis(runtime) == expected_kpis

    check()


# ------------------------------------------------------------------ the race the workers can run into
@pytest.mark.parametrize("first", ["record", "merge"])
def test_a_merge_and_a_record_of_the_prior_mrn_written_at_once(database_url: str, first: str) -> None:
    """Two batches in flight at once, one merging MRN9 into MRN1, one writing an appointment of
    MRN9: whichever writes first, the appointment ends with MRN1. (On PostgreSQL at READ
    COMMITTED neither transaction sees the other's uncommitted rows: without the store's
    per-practice merge lock the appointment kept MRN9.)"""
    engine = get_engine(database_url)

    def item(kind: str, source_id: str, message_id: int, **fields: Any) -> tuple[dict[str, Any], int]:
        return validate_record({"kind": kind, "practice": PRACTICE, "source_id": source_id,
                                "event_time": "2025-03-10T08:00:00-05:00", **fields}), message_id

    record = [item("appointment", "A4", 1, patient_source_id="MRN9", start="2025-03-18T08:30:00-05:00",
                   status="booked")]
    merge = [item("patient_merge", "MRN9>MRN1", 2, prior_source_id="MRN9", surviving_source_id="MRN1")]
    one, other = (record, merge) if first == "record" else (merge, record)
    failures: list[BaseException] = []

    def second() -> None:
        try:
            with writer(engine).begin() as conn:
                canonical.upsert_records(conn, other)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    with writer(engine).connect() as conn:
        with conn.begin():
            canonical.upsert_records(conn, one)
            thread = threading.Thread(target=second)
            thread.start()
            thread.join(0.5)  # the other batch gets as far as it can while this one is open
        thread.join(30)
    assert not thread.is_alive() and not failures, failures
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT patient_source_id FROM appointments")).scalar_one() == "MRN1"
