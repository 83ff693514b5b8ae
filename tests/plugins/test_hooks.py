"""The core's hooks, as its own features and an outside plugin use them: the store hooks, failed
messages and the identity link, through the real pipeline on SQLite and PostgreSQL."""

from __future__ import annotations

import ast
import json
import logging
import types
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from hub import hookimpl
from hub.hookspecs import RecordBatch
from hub.pipeline.intake import Arrival, receive, receive_many
from hub.pipeline.normalize import normalize_payload
from hub.plugins import load_plugins
from hub.runtime import Runtime
from hub.store import messages as message_store
from hub.store.engine import writer
from hub.store.practices import add_practice
from tests.conftest import ROOT
from tests.plugins.failure_counter import FailureCounter
from tests.support.json_records import plugin as records_plugin

PRACTICE = "derm-east"





MakeRuntime = Callable[..., Runtime]


@pytest.fixture
def make_runtime(database_url: str, monkeypatch: pytest.MonkeyPatch) -> MakeRuntime:
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)

    def make(*plugins: object) -> Runtime:
        runtime = Runtime.create(database_url=database_url, plugins=load_plugins(extra=[records_plugin, *plugins]),
                                 dispatcher="inline")
        with writer(runtime.engine).begin() as conn:
            add_practice(conn, PRACTICE, "Derm East")
        return runtime

    return make


def _appt(source_id: str, status: str, day: int) -> dict[str, Any]:
    return {"kind": "appointment", "source_id": source_id, "patient_source_id": "MRN1", "status": status,
            "start": "2025-03-10T09:00:00-05:00", "duration_min": 30,
            "event_time": f"2025-03-0{day}T08:00:00+00:00"}


def _payload(*records: dict[str, Any]) -> bytes:
    return json.dumps(list(records)).encode()


def _statuses(conn: sa.Connection) -> dict[str, str]:
    return dict(conn.execute(sa.text("SELECT source_id, status FROM appointments WHERE practice = :p"),
                             {"p": PRACTICE}).all())


def _stored_error(runtime: Runtime, message_id: int) -> str:
    with runtime.engine.connect() as conn:
        (row,) = [r for r in message_store.list_messages(conn, practice=PRACTICE) if r["id"] == message_id]
    assert row["status"] == "error"
    return str(row["error"])


# ------------------------------------------------------------------ the store hooks
class Watcher:
    """Reads the appointments before the upsert (kept in the batch's stash) and after it."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], dict[str, str], list[tuple[str, int | None]]]] = []

    @hookimpl
    def hub_records_storing(self, conn: sa.Connection, batch: RecordBatch) -> None:
        batch.stash[self] = _statuses(conn)

    @hookimpl
    def hub_records_stored(self, conn: sa.Connection, batch: RecordBatch) -> None:
        items = [(record["source_id"], message_id) for record, message_id in batch.items]
        self.calls.append((batch.stash.pop(self), _statuses(conn), items))


def test_store_hooks_see_the_rows_before_and_after_the_upsert_once_per_batch(make_runtime: MakeRuntime) -> None:
    watcher = Watcher()
    runtime = make_runtime(watcher)
    first = receive_many(runtime, PRACTICE, [Arrival(_payload(_appt("A1", "booked", 1))),
                                             Arrival(_payload(_appt("A2", "booked", 1)))], connector="json-records")
    ids = [receipts[0].outcome.message_id for receipts in first]
    assert len(watcher.calls) == 1  # two messages, one batch: one call, not one per message or record
    before, after, items = watcher.calls[0]
    assert before == {} and after == {"A1": "booked", "A2": "booked"}
    assert items == [("A1", ids[0]), ("A2", ids[1])]

    (later,) = receive(runtime, PRACTICE, _payload(_appt("A1", "cancelled", 2)), connector="json-records")
    before, after, items = watcher.calls[1]
    assert before == {"A1": "booked", "A2": "booked"} and after == {"A1": "cancelled", "A2": "booked"}
    assert items == [("A1", later.outcome.message_id)]


def test_the_report_upkeep_marks_the_cells_a_batch_moves(make_runtime: MakeRuntime) -> None:
    """The essential upkeep: an appointment moved from March to May marks both months."""
    runtime = make_runtime()
    receive(runtime, PRACTICE, _payload(_appt("A1", "booked", 1)), connector="json-records")
    with writer(runtime.engine).begin() as conn:
        conn.execute(sa.text("DELETE FROM report_dirty"))
    moved = {**_appt("A1", "booked", 2), "start": "2025-05-12T09:00:00-05:00"}
    receive(runtime, PRACTICE, _payload(moved), connector="json-records")
    with runtime.engine.connect() as conn:
        dirty = set(conn.execute(sa.text("SELECT practice, month FROM report_dirty")).all())
    assert dirty == {(PRACTICE, "2025-03"), (PRACTICE, "2025-05")}


class Refuses:
    @hookimpl
    def hub_records_stored(self, conn: sa.Connection, batch: RecordBatch) -> None:
        raise ValueError("Doe, Sam 1980-01-01")  # a message that quotes records must not reach the reason


def test_a_store_hook_that_raises_rolls_the_batch_back_and_errs_its_messages(make_runtime: MakeRuntime) -> None:
    counter = FailureCounter()
    runtime = make_runtime(Refuses(), counter)
    (receipt,) = receive(runtime, PRACTICE, _payload(_appt("A1", "booked", 1)), connector="json-records")
    reason = "store failure: a hub_records_stored plugin raised ValueError"
    assert receipt.outcome.error == reason
    assert _stored_error(runtime, receipt.outcome.message_id) == reason
    with runtime.engine.connect() as conn:
        assert _statuses(conn) == {}  # rolled back whole
        assert conn.execute(sa.text("SELECT count(*) FROM report_dirty")).scalar_one() == 0
    assert [(f.message_id, f.stage, f.reason) for f in counter.failures] == [(receipt.outcome.message_id, "store",
                                                                             reason)]


# ------------------------------------------------------------------ failed messages
def test_every_message_that_goes_to_error_reaches_the_failure_hook(make_runtime: MakeRuntime) -> None:
    counter = FailureCounter()
    runtime = make_runtime(counter)

    # processing: two bad messages and a good one in one batch, one call for both failures
    batch = receive_many(runtime, PRACTICE, [Arrival(b"[not json"), Arrival(_payload(_appt("A1", "booked", 1))),
                                             Arrival(b"[nor this")], connector="json-records")
    bad = [batch[0][0].outcome.message_id, batch[2][0].outcome.message_id]
    assert counter.calls == 1
    assert [(f.message_id, f.practice, f.connector, f.stage) for f in counter.failures] == [
        (bad[0], PRACTICE, "json-records", "process"), (bad[1], PRACTICE, "json-records", "process")]
    assert all(f.reason == _stored_error(runtime, f.message_id) == "not a JSON list of records"
               for f in counter.failures)

    # intake: a payload no connector reads is stored as an error at once
    (refused,) = receive(runtime, PRACTICE, b"\x00\x01 nothing reads this")
    failure = counter.failures[-1]
    assert (failure.message_id, failure.connector, failure.stage) == (refused.outcome.message_id, "unknown", "intake")
    assert failure.reason == _stored_error(runtime, refused.outcome.message_id)

    # the same payload again is a duplicate, not a new failure
    receive(runtime, PRACTICE, b"\x00\x01 nothing reads this")
    assert counter.calls == 2

    # the store: the write fails on its last attempt (inline processing has one)
    with writer(runtime.engine).begin() as conn:
        conn.execute(sa.text("ALTER TABLE appointments RENAME TO appointments_away"))
    (lost,) = receive(runtime, PRACTICE, _payload(_appt("A2", "booked", 1)), connector="json-records")
    failure = counter.failures[-1]
    assert (failure.message_id, failure.stage) == (lost.outcome.message_id, "store")
    assert failure.reason.startswith("store failure") and failure.reason == _stored_error(runtime, failure.message_id)
    assert counter.calls == 3 and counter.by_stage() == {"process": 2, "intake": 1, "store": 1}


class Broken:
    @hookimpl
    def hub_messages_failed(self, failures: Any) -> None:
        raise RuntimeError("the pager is down")


def test_a_failure_hook_that_raises_does_not_stop_ingest(make_runtime: MakeRuntime,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    counter = FailureCounter()
    runtime = make_runtime(counter, Broken())
    with caplog.at_level(logging.WARNING, logger="hub.pipeline"):
        (receipt,) = receive(runtime, PRACTICE, b"[not json", connector="json-records")
        (good,) = receive(runtime, PRACTICE, _payload(_appt("A1", "booked", 1)), connector="json-records")
    assert receipt.status == "error" and good.status == "accepted"
    assert _stored_error(runtime, receipt.outcome.message_id) == "not a JSON list of records"
    assert any("RuntimeError" in r.getMessage() for r in caplog.records)
    assert not any("pager" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ the identity link
class Mpi:
    """An outside master patient index: it names MRN1 with its own enterprise id."""

    @hookimpl
    def hub_link_identity(self, records: list[dict[str, Any]], practice: str) -> None:
        for i, record in enumerate(records):
            if record["kind"] == "patient" and record["source_id"] == "MRN1":
                records[i] = {**record, "enterprise_id": "MPI-1"}


def _patients(mrn1: str = "MRN1") -> list[dict[str, Any]]:
    return [{"kind": "patient", "source_id": mrn1, "family_name": "Doe", "given_name": "Sam",
             "birth_date": "1980-01-01"},
            {"kind": "patient", "source_id": "MRN2", "family_name": "Roe", "given_name": "Alex",
             "birth_date": "1975-06-30"},
            {"kind": "patient", "source_id": "MRN3", "family_name": "Poe"},
            _appt("A1", "booked", 1)]


def test_an_id_a_plugin_sets_is_kept_and_the_index_links_by_it(make_runtime: MakeRuntime) -> None:
    from hub.identity.mpi import run_identity

    runtime = make_runtime(Mpi())
    (receipt,) = receive(runtime, PRACTICE, _payload(*_patients()), connector="json-records")
    assert receipt.status == "accepted", receipt.outcome.error
    with runtime.engine.connect() as conn:
        sent = dict(conn.execute(sa.text("SELECT source_id, enterprise_id FROM patients")).all())
    assert sent == {"MRN1": "MPI-1", "MRN2": None, "MRN3": None}  # the hub sets none of its own per message
    # the same person at a second practice, named differently there but carrying the same outside id
    other = [{**_patients()[2], "source_id": "MRN1", "family_name": "Quux", "given_name": "Zed",
              "birth_date": "1950-02-03"}]
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "derm-west", "Derm West")
    (second,) = receive(runtime, "derm-west", _payload(*other), connector="json-records")
    assert second.status == "accepted", second.outcome.error
    run_identity(runtime.engine, settings=runtime.settings, plugins=runtime.plugins)
    with runtime.engine.connect() as conn:
        links = {(p, s): (e, m) for p, s, e, m in conn.execute(sa.text(
            "SELECT practice, source_id, enterprise_id, method FROM identity_links"))}
    assert links[(PRACTICE, "MRN1")] == links[("derm-west", "MRN1")]
    assert links[(PRACTICE, "MRN1")][1] == "rule:enterprise-id"
    assert len({e for e, _ in links.values()}) == 3  # MRN2 and MRN3 each alone


def test_a_dry_run_links_nobody() -> None:
    (done,) = normalize_payload(load_plugins(extra=[records_plugin]), _payload(*_patients()), practice=PRACTICE,
                                connector="json-records")
    assert {r["source_id"]: r.get("enterprise_id") for r in done.records if r["kind"] == "patient"} == \
        {"MRN1": None, "MRN2": None, "MRN3": None}


# ------------------------------------------------------------------ layers
def test_the_pipeline_imports_neither_the_reports_nor_the_identity_module() -> None:
    found = []
    for path in sorted((ROOT / "hub" / "pipeline").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += [f"{path.name}: {n}" for n in names if n.split(".")[:2] in (["hub", "reports"],
                                                                                 ["hub", "identity"])]
    assert not found


def test_the_base_table_indexes_belong_to_the_model() -> None:
    """Declared with the record tables, by the names migrations 0004, 0006 and 0017 gave them, without the
    reports."""
    import subprocess
    import sys

    code = ("import sys, hub.model.tables as t; "
            "print(sorted(i.name for tb in t.RECORD_TABLES.values() for i in tb.indexes if '_practice_' in i.name), "
            "'hub.reports' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == str(sorted([
        "ix_appointments_practice_patient", "ix_appointments_practice_referral", "ix_appointments_practice_start",
        "ix_charges_practice_encounter", "ix_charges_practice_service_date", "ix_encounters_practice_appointment",
        "ix_encounters_practice_patient", "ix_encounters_practice_start",
        "ix_referrals_practice_received", "ix_remittances_practice_charge", "ix_slots_practice_start"])) + " False"


def test_the_hot_caller_calls_as_pluggy_does() -> None:
    """Same implementations, same order (last registered first, tryfirst and trylast), same results."""

    def plugin(tag: str, **opts: bool) -> types.ModuleType:
        module = types.ModuleType(f"transform_{tag}")

        def hub_transform_record(record: dict[str, Any]) -> dict[str, Any] | None:
            record["seen"] = [*record.get("seen", []), tag]
            return None if tag == "quiet" else {"by": tag}

        module.hub_transform_record = hookimpl(**opts)(hub_transform_record)  # type: ignore[attr-defined]
        return module

    plugins = load_plugins(extra=[plugin("late", trylast=True), plugin("a"), plugin("quiet"), plugin("b"),
                                  plugin("early", tryfirst=True)])
    hot, slow = {"kind": "patient"}, {"kind": "patient"}
    fast = plugins.hot_caller("hub_transform_record")
    assert fast is not None
    assert fast(record=hot, practice="p", message_id=1) == \
        plugins.hook.hub_transform_record(record=slow, practice="p", message_id=1)
    assert hot["seen"] == slow["seen"] == ["early", "b", "quiet", "a", "late"]
    assert plugins.hot_caller("hub_messages_failed") is None  # no plugin implements it: nothing to call
