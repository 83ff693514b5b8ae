"""FHIR payloads through the real intake and store: transactions whole, batches per entry, answers."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from hub.pipeline.intake import receive
from hub.store.canonical import count_records, fetch_records
from hub.store.engine import writer
from hub.store.messages import list_messages
from hub.store.practices import add_practice

SAMPLES = Path(__file__).parent / "samples"


@pytest.fixture
def hub(runtime):  # type: ignore[no-untyped-def]
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "north", "North Synthetic Clinic")
    return runtime


def answer_of(runtime, receipts):  # type: ignore[no-untyped-def]
    body, media_type = runtime.plugins.connectors.get("fhir").answer([(r.envelope, r.outcome) for r in receipts])
    assert media_type == "application/fhir+json"
    return orjson.loads(body)


def test_a_transaction_is_stored_whole_and_answered_per_entry(hub) -> None:  # type: ignore[no-untyped-def]
    receipts = receive(hub, "north", (SAMPLES / "visit_transaction.json").read_bytes(), connector="fhir",
                       origin="visit_transaction.json")
    assert [r.status for r in receipts] == ["accepted"]
    with hub.engine.connect() as conn:
        counts = count_records(conn, "north")
        appointment = fetch_records(conn, "appointment", "north")[0]
    assert counts["appointment"] == counts["encounter"] == counts["referral"] == counts["patient"] == 1
    assert appointment["provider_npi"] == "1234567893" and appointment["status"] == "cancelled"
    answer = answer_of(hub, receipts)
    assert answer["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert statuses[:7] == ["201 Created"] * 7
    assert statuses[7] == "200 OK"  # the Observation: kept, not mapped, and said so
    assert "not mapped" in answer["entry"][7]["response"]["outcome"]["issue"][0]["diagnostics"]


def test_an_invalid_entry_fails_the_whole_transaction(hub) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads((SAMPLES / "visit_transaction.json").read_text())
    doc["entry"][5]["resource"]["participant"][0]["actor"] = {"reference": 42}
    receipts = receive(hub, "north", json.dumps(doc).encode(), connector="fhir", origin="bad.json")
    assert [r.status for r in receipts] == ["error"]
    with hub.engine.connect() as conn:
        assert sum(count_records(conn, "north").values()) == 0  # nothing half-applied
        stored = list_messages(conn, practice="north")
    assert len(stored) == 1 and stored[0]["status"] == "error"
    assert "Bundle.entry[5].resource.participant[0].actor.reference" in stored[0]["error"]
    answer = answer_of(hub, receipts)
    assert answer["resourceType"] == "OperationOutcome"
    issue = answer["issue"][0]
    assert issue["severity"] == "error" and issue["code"] == "invalid"
    assert issue["expression"] == ["Bundle.entry[5].resource.participant[0].actor.reference"]
    assert "Appointment" in issue["diagnostics"]


def test_a_batch_answers_each_entry(hub) -> None:  # type: ignore[no-untyped-def]
    good = {"resourceType": "Location", "id": "loc-1", "name": "Synthetic East"}
    bad = {"resourceType": "Appointment", "id": "a-1", "status": "booked",
           "start": "2025-01-01T09:00:00Z", "participant": [{"actor": {"reference": "Patient/p1"}}]}
    other = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": good, "request": {"method": "PUT", "url": "Location/loc-1"}},
        {"resource": bad, "request": {"method": "PUT", "url": "Appointment/a-1"}},
        {"resource": other, "request": {"method": "POST", "url": "Observation"}},
        {"request": {"method": "DELETE", "url": "Patient/9"}}]}
    receipts = receive(hub, "north", orjson.dumps(batch), connector="fhir", origin="batch.json")
    assert [r.status for r in receipts] == ["accepted", "error", "error", "error"]
    answer = answer_of(hub, receipts)
    assert answer["type"] == "batch-response"
    entries = [e["response"] for e in answer["entry"]]
    assert [e["status"] for e in entries] == ["201 Created", "422 Unprocessable Entity",
                                              "422 Unprocessable Entity", "422 Unprocessable Entity"]
    assert entries[1]["outcome"]["issue"][0]["expression"] == ["Appointment.participant[0].status"]
    assert entries[2]["outcome"]["issue"][0]["code"] == "not-supported"
    assert "DELETE" in entries[3]["outcome"]["issue"][0]["diagnostics"]
    with hub.engine.connect() as conn:
        assert len(list_messages(conn, practice="north")) == 4  # every entry kept, errors included


def test_the_same_payload_twice_is_a_duplicate(hub) -> None:  # type: ignore[no-untyped-def]
    data = (SAMPLES / "patient.json").read_bytes()
    receive(hub, "north", data, connector="fhir")
    again = receive(hub, "north", data, connector="fhir")
    assert [r.status for r in again] == ["duplicate"]
    assert answer_of(hub, again)["issue"][0]["diagnostics"].startswith("already received")


def test_found_by_media_type_and_content(hub) -> None:  # type: ignore[no-untyped-def]
    data = (SAMPLES / "billing_collection.json").read_bytes()
    receipts = receive(hub, "north", data, media_type="application/fhir+json; charset=utf-8")
    assert [r.status for r in receipts] == ["accepted"]
    with hub.engine.connect() as conn:
        remits = {r["source_id"]: r for r in fetch_records(conn, "remittance", "north")}
    assert remits["eob-1-1"]["paid_amount"] == Decimal("80.00")
    assert remits["eob-1-1"]["adjustments"] == [{"group": "PR", "reason": "3", "amount": "30.00"},
                                                {"group": "CO", "reason": "45", "amount": "40.00"}]
    assert remits["eob-1-2"]["denied"] is True and remits["cr-err"]["denied"] is True


def test_an_unreadable_payload_is_kept_and_refused(hub) -> None:  # type: ignore[no-untyped-def]
    data = b'{"resourceType": "Bundle", "type": "subscription-notification", "entry": []}'
    receipts = receive(hub, "north", data, connector="fhir", origin="response.json")
    assert [r.status for r in receipts] == ["error"] and receipts[0].outcome.rejected
    issue = answer_of(hub, receipts)["issue"][0]
    assert issue["code"] == "structure" and issue["expression"] == ["Bundle.type"]
    with hub.engine.connect() as conn:
        [stored] = list_messages(conn, practice="north")
    assert stored["status"] == "error" and "subscription-notification" in stored["error"]
