"""Resource → record mapping and reference resolution, on small synthetic resources."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hub_fhir import FhirConnector, validation_enabled
from hub_fhir.bundle import Item, References

from hub.connector import Context
from hub.errors import HubError, ValidationError
from hub.model.schemas import validate_record


def normalize(doc: dict[str, Any], **config: Any) -> list[dict[str, Any]]:
    connector = FhirConnector()
    records = []
    for envelope in connector.split(orjson.dumps(doc)):
        records += connector.normalize(envelope, Context(practice="p", config=config, origin="t.json"))
    return records


def bundle(*resources: dict[str, Any], kind: str = "collection", urls: list[str] | None = None) -> dict[str, Any]:
    entries = []
    for i, res in enumerate(resources):
        entry: dict[str, Any] = {"resource": res}
        if urls and urls[i]:
            entry["fullUrl"] = urls[i]
        entries.append(entry)
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def appointment(*actors: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Appointment", "id": "a1", "status": "booked", "start": "2025-05-01T09:00:00-04:00",
            "minutesDuration": 20, "participant": [{"actor": a, "status": "accepted"} for a in actors], **extra}


def by_kind(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in records if r["kind"] == kind]


def test_every_kind_of_reference_resolves() -> None:
    patient = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "M1"}]}
    practitioner = {"resourceType": "Practitioner", "id": "dr1",
                    "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1999999984"}]}
    role = {"resourceType": "PractitionerRole", "id": "role1", "practitioner": {"reference": "Practitioner/dr1"}}
    location = {"resourceType": "Location", "id": "L1", "name": "Room 1"}
    appt = appointment({"reference": "urn:uuid:0000-p"},  # urn:uuid full URL in the Bundle
                       {"reference": "http://ex.org/fhir/PractitionerRole/role1"},  # absolute → role → practitioner
                       {"reference": "Location/L1"})  # relative
    enc = {"resourceType": "Encounter", "id": "e1", "status": "finished",
           "class": {"code": "AMB"}, "subject": {"identifier": {"system": "urn:mrn", "value": "M1"}},  # logical
           "appointment": [{"reference": "Appointment/a1/_history/3"}]}
    records = normalize(bundle(patient, practitioner, role, location, appt, enc,
                               urls=["urn:uuid:0000-p", None, "http://ex.org/fhir/PractitionerRole/role1", None,
                                     None, None]))
    [a] = by_kind(records, "appointment")
    assert (a["patient_source_id"], a["provider_source_id"], a["provider_npi"], a["location_source_id"]) == \
        ("0000-p", "dr1", "1999999984", "L1")
    [e] = by_kind(records, "encounter")
    assert e["patient_source_id"] == "0000-p" and e["appointment_source_id"] == "a1"
    [provider] = by_kind(records, "provider")  # Practitioner and its role make one provider
    assert provider["source_id"] == "dr1" and provider["npi"] == "1999999984"


def test_contained_resources_resolve_inside_their_container() -> None:
    appt = appointment({"reference": "#doc"}, {"reference": "Patient/p1"},
                       contained=[{"resourceType": "Practitioner", "id": "doc",
                                   "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi",
                                                   "value": "1111111112"}]}])
    [a] = normalize(appt)
    assert a["provider_source_id"] == "a1#doc" and a["provider_npi"] == "1111111112"
    assert a["patient_source_id"] == "p1"


def test_a_reference_that_cannot_be_resolved_keeps_its_source_id() -> None:
    refs = References.of([])
    assert refs.resolve({"reference": "Patient/123"}).source_id == "123"
    assert refs.resolve({"reference": "https://other.org/fhir/Patient/77/_history/2"}).source_id == "77"
    assert refs.resolve({"reference": "urn:uuid:abc-1", "type": "Patient"}).source_id == "abc-1"
    assert refs.resolve({"identifier": {"system": "urn:mrn", "value": "M9"}, "type": "Patient"}).source_id == "M9"
    assert refs.resolve({"display": "a name only"}) is None
    item = Item({"resourceType": "Patient", "id": "x"}, "Patient")
    assert References.of([item]).resolve({"reference": "Patient/x"}).resource is item.resource


def test_date_times_without_an_offset_come_out_naive_unless_a_timezone_is_configured() -> None:
    enc = {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"},
           "period": {"start": "2025-01-10T08:30:00", "end": "2025-01-10"}}
    # strict R4 wants an offset on a dateTime with a time; intake lets that one rule pass (the hub reads
    # the time in the practice's zone), with validation on or off
    for validate in (True, False):
        [without] = normalize(enc, validate=validate)
        assert without["start"] == "2025-01-10T08:30:00"  # wall-clock time, no offset guessed
        assert "end" not in without  # a date alone is not a point in time
    [with_zone] = normalize(enc, timezone="America/Chicago")  # the connector's override zone
    assert with_zone["start"] == "2025-01-10T08:30:00-06:00"
    with pytest.raises(ValidationError, match="timezone"):
        normalize(enc, timezone="Mars/Olympus", validate=False)


def test_a_time_with_an_offset_is_kept_as_sent_even_with_a_timezone_configured() -> None:
    enc = {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"},
           "period": {"start": "2025-01-10T08:30:00+02:00", "end": "2025-01-10T09:00:00Z"}}
    [record] = normalize(enc, timezone="America/Chicago")
    assert (record["start"], record["end"]) == ("2025-01-10T08:30:00+02:00", "2025-01-10T09:00:00Z")


def test_only_the_missing_offset_is_let_through_and_the_onboarding_check_still_names_it() -> None:
    appt = appointment({"reference": "Patient/p1"}, start="2025-05-01T09:00:00", end="2025-05-01T09:20:00",
                       created="2025-04-20T16:45:10.250")
    [record] = normalize(appt)
    assert (record["start"], record["booked_at"]) == ("2025-05-01T09:00:00", "2025-04-20T16:45:10.250000")
    findings = FhirConnector().findings(FhirConnector().split(orjson.dumps(appt))[0], Context(practice="p"))
    assert len(findings) == 1 and "(and 2 more problem(s))" in findings[0]  # created, end, start
    # a time without seconds is not a whole FHIR time: refused, as is any other problem beside a naive time
    with pytest.raises(ValidationError, match="start"):
        normalize(appointment({"reference": "Patient/p1"}, start="2025-05-01T09:00"))
    bad = appointment({"reference": "Patient/p1"}, start="2025-05-01T09:00:00")
    bad["participant"][0]["status"] = 7
    with pytest.raises(ValidationError, match=r"participant\[0\]\.status"):
        normalize(bad)


def test_invalid_resource_names_the_element_path() -> None:
    bad = appointment({"reference": "Patient/p1"})
    bad["participant"][0]["status"] = 7
    with pytest.raises(ValidationError) as caught:
        normalize(bad)
    assert caught.value.location == "Appointment.participant[0].status"
    with pytest.raises(ValidationError) as caught:  # a transaction is all or nothing
        normalize(bundle({"resourceType": "Location", "id": "L"}, bad, kind="transaction"))
    assert caught.value.location == "Bundle.entry[1].resource.participant[0].status"
    assert "Appointment" in caught.value.message


def test_validation_can_be_turned_off_for_trusted_backfills(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = appointment({"reference": "Patient/p1"})
    bad["participant"][0]["status"] = 7  # wrong type for FHIR, irrelevant to the mapping
    assert normalize(bad, validate=False)[0]["patient_source_id"] == "p1"
    assert validation_enabled({}) and not validation_enabled({"validate": "false"})
    monkeypatch.setenv("HUB_FHIR_VALIDATE", "0")
    assert not validation_enabled({})


def test_unsupported_types_are_skipped_in_a_bundle_and_refused_alone() -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    records = normalize(bundle(obs, {"resourceType": "Location", "id": "L", "name": "A"}))
    assert [r["kind"] for r in records] == ["location"]
    with pytest.raises(ValidationError, match="unsupported resource type Observation"):
        normalize(obs)
    with pytest.raises(HubError, match="not a FHIR R4 resource type"):
        normalize({"resourceType": "Spaceship", "id": "s"})


def test_history_bundle_and_transaction_skip_deletions() -> None:
    history = {"resourceType": "Bundle", "type": "history", "entry": [
        {"request": {"method": "DELETE", "url": "Patient/1"}},
        {"resource": {"resourceType": "Patient", "id": "2"}, "request": {"method": "PUT", "url": "Patient/2"}}]}
    assert [r["source_id"] for r in normalize(history)] == ["2"]
    history["type"] = "transaction"  # the hub keeps history: a DELETE is skipped (counted), the rest taken in
    assert [r["source_id"] for r in normalize(history)] == ["2"]
    del history["entry"][1]
    with pytest.raises(HubError, match="nothing to take in: 1 DELETE entry skipped"):
        normalize(history)


def test_coverage_and_remittance_details() -> None:
    payer = {"resourceType": "Organization", "id": "o1", "name": "Synthetic Mutual"}
    cov = {"resourceType": "Coverage", "id": "c1", "status": "active", "beneficiary": {"reference": "Patient/p"},
           "payor": [{"reference": "Organization/o1"}], "order": 2,
           "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "pay"}]}}
    cr = {"resourceType": "ClaimResponse", "id": "r1", "status": "active", "type": {"coding": [{"code": "x"}]},
          "use": "claim", "patient": {"reference": "Patient/p"}, "created": "2025-02-01",
          "insurer": {"reference": "Organization/o1"}, "outcome": "complete",
          "request": {"reference": "Claim/k1"},
          "item": [{"itemSequence": 3, "adjudication": [
              {"category": {"coding": [{"code": "submitted"}]}, "amount": {"value": 100, "currency": "USD"}},
              {"category": {"coding": [{"code": "deductible"}]}, "amount": {"value": 25.5, "currency": "USD"}},
              {"category": {"coding": [{"code": "benefit"}]}, "amount": {"value": 74.5, "currency": "USD"}}]}]}
    records = normalize(bundle(payer, cov, cr))
    [coverage] = by_kind(records, "coverage")
    assert (coverage["payer_name"], coverage["financial_class"], coverage["rank"]) == ("Synthetic Mutual",
                                                                                       "self_pay", 2)
    [remit] = by_kind(records, "remittance")
    assert remit["source_id"] == "r1-3" and remit["charge_source_id"] == "k1-3" and remit["claim_id"] == "k1"
    assert remit["adjustments"] == [{"group": "PR", "reason": "1", "amount": "25.50"}]
    assert remit["paid_amount"] == "74.50" and remit["denied"] is False


# ---------------------------------------------------------------- patient address, e-mail and merges
def person(pid: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": "Sampleton", "given": ["Avery"]}],
            "birthDate": "1980-01-02", **extra}


def test_patient_home_address_line_and_email() -> None:
    res = person("p1", address=[
        {"use": "work", "line": ["9 Office Park"], "postalCode": "62521"},
        {"use": "old", "line": ["1 Former Rd"], "postalCode": "62700"},
        {"use": "home", "line": ["22 Home St", "Apt 4"], "city": "Springfield", "postalCode": "62702"}],
        telecom=[{"system": "phone", "value": "217-555-0100", "use": "mobile"},
                 {"system": "email", "value": "avery.work@example.org", "use": "work"},
                 {"system": "email", "value": "avery@example.org", "use": "home"}])
    [patient] = normalize(res)
    # the home address: its first line and its postal code; the home e-mail; the phone as before
    assert (patient["address_line"], patient["postal_code"]) == ("22 Home St", "62702")
    assert (patient["email"], patient["phone"]) == ("avery@example.org", "217-555-0100")


def test_without_a_home_address_the_first_that_is_not_old() -> None:
    res = person("p1", address=[{"use": "old", "line": ["1 Former Rd"], "postalCode": "62700"},
                                {"line": ["5 Current Ave"], "postalCode": "62703"}],
                 telecom=[{"system": "email", "value": "old@example.org", "use": "old"},
                          {"system": "email", "value": "avery@example.org"}])
    [patient] = normalize(res)
    assert (patient["address_line"], patient["postal_code"], patient["email"]) == \
        ("5 Current Ave", "62703", "avery@example.org")
    # only an old address: no street line; its postal code is still the first address's, as before
    [only_old] = normalize(person("p1", address=[{"use": "old", "line": ["1 Former Rd"], "postalCode": "62700"}]))
    assert "address_line" not in only_old and only_old["postal_code"] == "62700"
    assert "email" not in only_old


def test_patient_link_replaced_by_is_a_merge_into_the_other_patient() -> None:
    prior = person("p-old", active=False, meta={"lastUpdated": "2025-03-05T10:15:00-05:00"},
                   link=[{"other": {"reference": "Patient/p-new"}, "type": "replaced-by"}])
    records = normalize(prior)
    assert [r["kind"] for r in records] == ["patient", "patient_merge"]
    merge = by_kind(records, "patient_merge")[0]
    assert (merge["source_id"], merge["prior_source_id"], merge["surviving_source_id"], merge["merged_at"]) == \
        ("p-old>p-new", "p-old", "p-new", "2025-03-05T10:15:00-05:00")
    validate_record({**merge, "practice": "p"})


def test_patient_link_replaces_is_the_same_merge_seen_from_the_surviving_record() -> None:
    surviving = person("p-new", link=[{"other": {"reference": "Patient/p-old"}, "type": "replaces"}])
    prior = person("p-old", active=False, link=[{"other": {"reference": "Patient/p-new"}, "type": "replaced-by"}])
    doc = {**bundle(surviving, prior), "timestamp": "2025-03-05T18:00:00Z"}
    records = normalize(doc)
    [merge] = by_kind(records, "patient_merge")  # both sides of one merge: one record
    assert (merge["prior_source_id"], merge["surviving_source_id"]) == ("p-old", "p-new")
    assert merge["merged_at"] == "2025-03-05T18:00:00Z"  # no meta.lastUpdated: the Bundle's timestamp
    [alone] = by_kind(normalize(surviving), "patient_merge")
    assert alone["source_id"] == "p-old>p-new" and "merged_at" not in alone


def test_a_link_by_identifier_resolves_to_the_patient_in_the_payload() -> None:
    surviving = person("p-new", identifier=[{"system": "urn:mrn", "value": "M2"}])
    prior = person("p-old", link=[{"other": {"identifier": {"system": "urn:mrn", "value": "M2"}, "type": "Patient"},
                                   "type": "replaced-by"}])
    [merge] = by_kind(normalize(bundle(surviving, prior)), "patient_merge")
    assert (merge["prior_source_id"], merge["surviving_source_id"]) == ("p-old", "p-new")


def test_other_patient_links_are_no_merge() -> None:
    res = person("p1", link=[{"other": {"reference": "Patient/p2"}, "type": "seealso"},
                             {"other": {"reference": "RelatedPerson/r1"}, "type": "refer"},
                             {"other": {"reference": "RelatedPerson/r2"}, "type": "replaced-by"},
                             {"other": {"reference": "Patient/p1"}, "type": "replaces"}])  # itself
    assert [r["kind"] for r in normalize(res)] == ["patient"]


def test_rendered_patients_keep_their_street_line_phone_and_email() -> None:
    from hub.connector import RenderOptions
    from tests.demo.test_render import RECORDS

    extra = {"address_line": "22 Home St", "phone": "217-555-0100", "email": "blake@example.org"}
    records = [{**r, **extra} if r["kind"] == "patient" else r for r in RECORDS]
    connector = FhirConnector()
    files = connector.render(records, options=RenderOptions(practice="p", timezone="America/Chicago"))
    read = [r for f in files for e in connector.split(f.data, origin=f.name)
            for r in connector.normalize(e, Context(practice="p", origin=f.name)) if r["kind"] == "patient"]
    assert read and all((r["address_line"], r["postal_code"], r["phone"], r["email"]) ==
                        ("22 Home St", "60601", "217-555-0100", "blake@example.org") for r in read)
    # a patient without them is written as before: the postal code alone, no telecom
    plain = connector.render(RECORDS, options=RenderOptions(practice="p", timezone="America/Chicago"))
    patients = [e["resource"] for f in plain for e in orjson.loads(f.data)["entry"]
                if e["resource"]["resourceType"] == "Patient"]
    assert patients and all(p["address"] == [{"postalCode": "60601"}] and "telecom" not in p for p in patients)
