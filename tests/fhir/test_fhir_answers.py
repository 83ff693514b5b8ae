"""FHIR answers over HTTP: a refused resource or transaction is 400 (unreadable) or 422 (refused by the
rules), never 200, and its OperationOutcome names the FHIR element, not the hub's model field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hub_fhir import outcome
from hub_fhir.bundle import split

from hub.connector import Outcome
from hub.runtime import Runtime
from hub.store.canonical import count_records
from hub.store.engine import writer
from hub.store.messages import list_messages
from hub.store.practices import add_practice

FHIR = "application/fhir+json"
PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "name": [{"family": "Synthetic"}]}


def appointment(ident: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Appointment", "id": ident, "status": "booked",
            "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"}], **extra}


def transaction(*resources: dict[str, Any]) -> bytes:
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{r['resourceType']}-{r['id']}", "resource": r,
         "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]})


@pytest.fixture
def client(tmp_path: Path):  # type: ignore[no-untyped-def]
    from hub.app import create_app
    from hub.security.keys import create_key

    runtime = Runtime.create(database_url=f"sqlite:///{tmp_path / 'answers.db'}", dispatcher="inline")
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "north", "North Synthetic Clinic")
        feed = create_key(conn, "feed", "north")
    app = create_app(runtime)

    def post(data: bytes) -> tuple[int, dict[str, Any]]:
        response = app.test_client().post("/api/v1/practices/north/messages", data=data, content_type=FHIR,
                                          headers={"Authorization": f"Bearer {feed}"})
        assert response.mimetype == FHIR
        return response.status_code, orjson.loads(response.get_data())

    post.runtime = runtime  # type: ignore[attr-defined]
    return post


def test_a_transaction_refused_by_the_model_is_422_naming_the_fhir_element(client) -> None:  # type: ignore[no-untyped-def]
    # the third entry is a booked appointment without start: the common model needs one
    status, body = client(transaction(PATIENT, appointment("a1", start="2025-03-03T09:00:00Z"), appointment("a2")))
    assert status == 422
    assert body["resourceType"] == "OperationOutcome"
    (issue,) = body["issue"]
    assert issue["severity"] == "error"
    assert issue["expression"] == ["Bundle.entry[2].resource.start"]  # not appointment.start
    with client.runtime.engine.connect() as conn:
        assert sum(count_records(conn, "north").values()) == 0  # a transaction: nothing half-applied
        (kept,) = list_messages(conn, practice="north")
    assert kept["status"] == "error"


def test_a_single_resource_refused_by_the_model_is_422(client) -> None:  # type: ignore[no-untyped-def]
    charge = {"resourceType": "ChargeItem", "id": "c1", "status": "billable", "code": {"text": "visit"},
              "subject": {"reference": "Patient/p1"}}  # no occurrence: the charge has no service date
    status, body = client(orjson.dumps(charge))
    assert status == 422
    assert body["issue"][0]["expression"] == ["ChargeItem.occurrenceDateTime"]


def test_an_invalid_element_is_422_with_its_path(client) -> None:  # type: ignore[no-untyped-def]
    bad = appointment("a3", start="2025-03-03T09:00:00Z")
    bad["participant"][0]["actor"] = {"reference": 42}
    status, body = client(transaction(PATIENT, bad))
    assert status == 422
    assert body["issue"][0]["expression"] == ["Bundle.entry[1].resource.participant[0].actor.reference"]


def test_unreadable_json_or_bundle_is_400(client) -> None:  # type: ignore[no-untyped-def]
    status, body = client(b'{"resourceType": "Bundle", "type": "transaction", "entry": [')
    assert status == 400
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "structure"
    status, body = client(orjson.dumps({"resourceType": "Bundle", "type": "no-such-type", "entry": []}))
    assert status == 400
    assert body["issue"][0]["expression"] == ["Bundle.type"]


def test_what_is_taken_in_is_200_and_a_batch_answers_per_entry(client) -> None:  # type: ignore[no-untyped-def]
    status, body = client(transaction(PATIENT, appointment("a4", start="2025-03-03T09:00:00Z")))
    assert status == 200 and body["type"] == "transaction-response"
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {**PATIENT, "id": "p2"}, "request": {"method": "PUT", "url": "Patient/p2"}},
        {"resource": appointment("a5"), "request": {"method": "PUT", "url": "Appointment/a5"}}]}
    status, body = client(orjson.dumps(batch))
    assert status == 200 and body["type"] == "batch-response"  # FHIR: the batch itself went through
    assert [e["response"]["status"] for e in body["entry"]] == ["201 Created", "422 Unprocessable Entity"]
    assert body["entry"][1]["response"]["outcome"]["issue"][0]["expression"] == ["Appointment.start"]
    # the same refused resource again: still refused, still 422 (not "already received", 200)
    status, body = client(transaction(PATIENT, appointment("a1", start="2025-03-03T09:00:00Z"), appointment("a2")))
    status_again, again = client(transaction(PATIENT, appointment("a1", start="2025-03-03T09:00:00Z"),
                                             appointment("a2")))
    assert (status, status_again) == (422, 422)


def refusal(reason: str, *resources: dict[str, Any]) -> dict[str, Any]:
    data = transaction(*resources) if len(resources) > 1 else orjson.dumps(resources[0])
    (envelope,) = split(data)
    return outcome.operation_outcome(Outcome(accepted=False, error=reason, message_id=7), envelope=envelope)


def test_model_fields_are_traced_back_to_the_elements_that_fed_them() -> None:
    said = "http k1: record does not fit the common model: encounter.start: start: Not a valid datetime."
    encounter = {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"},
                 "period": {"start": "2025-03-03T09:00:00Z"}}
    assert refusal(said, PATIENT, encounter)["issue"][0]["expression"] == ["Bundle.entry[1].resource.period.start"]
    # missing: only the resources that lack the element are named
    said = ("record does not fit the common model: appointment.start: start: Missing data for required field.")
    named = refusal(said, appointment("x1"), PATIENT, appointment("x2", start="2025-03-03T09:00:00Z"),
                    appointment("x3"))["issue"][0]["expression"]
    assert named == ["Bundle.entry[0].resource.start", "Bundle.entry[3].resource.start"]
    # two fields of two resource types that give the same kind
    said = "record does not fit the common model: charge.amount, charge.units: amount: Not a valid number.; units: x"
    claim = {"resourceType": "Claim", "id": "cl1"}
    item = {"resourceType": "ChargeItem", "id": "ci1"}
    assert refusal(said, claim, item)["issue"][0]["expression"] == [
        "Bundle.entry[0].resource.item.net", "Bundle.entry[1].resource.priceOverride",
        "Bundle.entry[0].resource.item.quantity", "Bundle.entry[1].resource.quantity"]
    # a field without a known element: the resource itself
    said = "record does not fit the common model: patient.enterprise_id: enterprise_id: Too long."
    assert refusal(said, PATIENT)["issue"][0]["expression"] == ["Patient"]
    # a reason that names its element keeps it; any other reason has no expression
    said = "bad.json, Bundle.entry[1].resource.status: not a valid code"
    assert refusal(said, PATIENT, claim)["issue"][0]["expression"] == ["Bundle.entry[1].resource.status"]
    assert "expression" not in refusal("the store could not take it", PATIENT)["issue"][0]


def test_every_model_field_named_is_a_field_of_its_kind_and_every_element_of_a_mapped_type() -> None:
    from hub_fhir.mapping import MAPPERS

    from hub.model.kinds import KINDS

    for named, elements in outcome.MODEL_ELEMENTS.items():
        kind, _, field = named.partition(".")
        assert field in {f.name for f in KINDS[kind]}, named
        assert set(elements) <= set(outcome.KIND_TYPES[kind]), named
    assert {t for types in outcome.KIND_TYPES.values() for t in types} <= set(MAPPERS)
