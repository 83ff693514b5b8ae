"""Partial acceptance of FHIR payloads: what maps is kept, what does not is counted in the message's tally.

Types the hub does not map are counted (``not_mapped``) and never validated; in lenient mappings (the
default) an invalid optional element is left out (``invalid``, with its element path), an invalid resource
is left out whole and the rest kept; a transaction stays all or nothing for the resources the hub maps, and
a strict mapping keeps every message all or nothing. Expectations are read from the synthetic inputs and,
for the corpus files, from the files themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hub_fhir.validate import validate_lenient

from hub.errors import ParseError, ValidationError
from hub.mapping import Mapping
from hub.pipeline.intake import receive
from hub.pipeline.normalize import Normalized, normalize_payload
from hub.plugins import load_plugins
from hub.store.engine import writer
from hub.store.messages import list_messages
from hub.store.practices import add_practice

LENIENT, STRICT = Mapping(), Mapping(strict=True)


@pytest.fixture(scope="module")
def plugins():  # type: ignore[no-untyped-def]
    return load_plugins()


def run(plugins: Any, doc: dict[str, Any] | bytes, mapping: Mapping = LENIENT) -> list[Normalized]:
    data = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return normalize_payload(plugins, data, practice="p", connector="fhir", mapping=mapping, origin="t.json")


def one(plugins: Any, doc: dict[str, Any] | bytes, mapping: Mapping = LENIENT) -> Normalized:
    [result] = run(plugins, doc, mapping)
    return result


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(resource: dict[str, Any]) -> dict[str, Any]:
    return {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}


def patient(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", "name": [{"family": "Testperson", "given": ["Ann"]}],
            "gender": "female", "birthDate": "1980-02-03", **extra}


LOCATION = {"resourceType": "Location", "id": "L1", "name": "Synthetic Room 1"}
# invalid FHIR: a quantity's value must be a decimal
BAD_OBSERVATION = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                   "valueQuantity": {"value": "not a number"}}
BAD_HEADER = {"resourceType": "MessageHeader", "eventCoding": {"code": "A01"}, "source": {"endpoint": 7}}


def bad_appointment() -> dict[str, Any]:  # participant.status is required; 7 is not a code
    return {"resourceType": "Appointment", "id": "a1", "status": "booked", "start": "2025-05-01T09:00:00Z",
            "participant": [{"actor": {"reference": "Patient/p1"}, "status": 7}]}


def kinds(result: Normalized) -> list[str]:
    return sorted(r["kind"] for r in result.records)


# ---------------------------------------------------------------- types the hub does not map

@pytest.mark.parametrize("mapping", [LENIENT, STRICT], ids=["lenient", "strict"])
def test_an_invalid_resource_of_an_unmapped_type_is_counted_not_validated(plugins, mapping) -> None:  # type: ignore[no-untyped-def]
    result = one(plugins, bundle("transaction", post(BAD_OBSERVATION), post(patient())), mapping)
    assert result.error is None
    assert kinds(result) == ["patient"]
    assert result.tally.not_mapped == {"Observation": 1}
    assert result.tally.invalid == []
    assert result.tally.mapped == 1


def test_an_invalid_message_header_does_not_refuse_a_message_bundle(plugins) -> None:  # type: ignore[no-untyped-def]
    result = one(plugins, bundle("message", {"resource": BAD_HEADER}, {"resource": patient()},
                                 {"resource": LOCATION}))
    assert result.error is None and kinds(result) == ["location", "patient"]
    assert result.tally.not_mapped == {"MessageHeader": 1}


def test_a_message_of_nothing_but_unmapped_types_stays_refused(plugins) -> None:  # type: ignore[no-untyped-def]
    result = one(plugins, bundle("collection", {"resource": BAD_OBSERVATION}, {"resource": BAD_HEADER}))
    assert not result.records
    assert isinstance(result.error, ValidationError)
    assert "unsupported resource type MessageHeader, Observation: kept in the message store" in result.error.message
    assert result.tally.not_mapped == {"MessageHeader": 1, "Observation": 1}


def test_a_name_that_is_no_r4_type_is_counted_in_a_bundle(plugins) -> None:  # type: ignore[no-untyped-def]
    result = one(plugins, bundle("collection", {"resource": {"resourceType": "Spaceship", "id": "s"}},
                                 {"resource": LOCATION}))
    assert kinds(result) == ["location"]
    assert result.tally.not_mapped == {"Spaceship": 1}
    assert result.tally.notes == ["Bundle.entry[0].resource: 'Spaceship' is not a FHIR R4 resource type"]


# ---------------------------------------------------------------- lenient and strict

def test_lenient_leaves_out_an_invalid_optional_element_and_maps_the_rest(plugins) -> None:  # type: ignore[no-untyped-def]
    # Address.period must be one Period, not a list; birthDate is no date (month 13)
    doc = patient(birthDate="1980-13-45", address=[{"postalCode": "02139", "period": [{"start": "2001"}]}])
    result = one(plugins, doc)
    assert result.error is None
    [record] = result.records
    assert record["kind"] == "patient" and record["source_id"] == "p1"
    assert record["postal_code"] == "02139"  # the address stays, its period goes
    assert record.get("birth_date") is None and record["family_name"] == "Testperson"
    assert sorted(path for path, _ in result.tally.invalid) == ["Patient.address[0].period", "Patient.birthDate"]
    for _, reason in result.tally.invalid:
        assert reason and "1980-13-45" not in reason and "2001" not in reason  # the rule, never the value


def test_strict_refuses_the_same_resource_naming_the_path(plugins) -> None:  # type: ignore[no-untyped-def]
    doc = patient(address=[{"postalCode": "02139", "period": [{"start": "2001"}]}])
    result = one(plugins, doc, STRICT)
    assert not result.records
    assert isinstance(result.error, ValidationError)
    assert result.error.location == "Patient.address[0].period"
    assert "Patient is not valid FHIR R4: address[0].period" in result.error.message
    lenient = one(plugins, doc)  # the same, lenient: taken in without the period
    assert lenient.error is None and [p for p, _ in lenient.tally.invalid] == ["Patient.address[0].period"]


def test_an_element_whose_required_part_fails_goes_whole_where_it_may(plugins) -> None:  # type: ignore[no-untyped-def]
    # Patient.link[].other and .type are required: link[0] lacks other, link[1] has a type that is no code;
    # each link may be absent, so those two go and link[2] stays
    doc = patient(link=[{"type": "seealso"}, {"type": 7, "other": {"reference": "Patient/b"}},
                        {"type": "refer", "other": {"reference": "Patient/c"}}])
    result = one(plugins, doc)
    assert result.error is None and kinds(result) == ["patient"]
    assert [path for path, _ in result.tally.invalid] == ["Patient.link[0]", "Patient.link[1]"]
    reasons = dict(result.tally.invalid)
    assert reasons["Patient.link[0]"].startswith("other: ")
    assert reasons["Patient.link[1]"].startswith("type: ")


def test_an_invalid_required_element_leaves_the_resource_out_and_keeps_the_rest(plugins) -> None:  # type: ignore[no-untyped-def]
    result = one(plugins, bundle("collection", {"resource": LOCATION}, {"resource": bad_appointment()}))
    assert result.error is None
    assert kinds(result) == ["location"]
    [(path, reason)] = result.tally.invalid
    assert path == "Bundle.entry[1].resource"
    assert reason.startswith("left out whole: Appointment is not valid FHIR R4: participant[0].status")
    strict = one(plugins, bundle("collection", {"resource": LOCATION}, {"resource": bad_appointment()}), STRICT)
    assert strict.error is not None and not strict.records
    assert strict.error.location == "Bundle.entry[1].resource.participant[0].status"


def test_an_invalid_element_the_record_needs_leaves_the_resource_out(plugins) -> None:  # type: ignore[no-untyped-def]
    appt = bad_appointment()
    appt["participant"][0]["status"] = "accepted"
    appt["start"] = "2025-05-01T09:00"  # no seconds: not an instant; an appointment's record needs its start
    result = one(plugins, bundle("collection", {"resource": LOCATION}, {"resource": appt}))
    assert result.error is None and kinds(result) == ["location"]
    [(path, reason)] = result.tally.invalid
    assert path == "Bundle.entry[1].resource" and "start" in reason


def test_a_message_whose_mapped_resources_are_all_invalid_is_refused(plugins) -> None:  # type: ignore[no-untyped-def]
    result = one(plugins, bundle("collection", {"resource": bad_appointment()}, {"resource": BAD_OBSERVATION}))
    assert not result.records
    assert result.error is not None
    assert result.error.location == "Bundle.entry[0].resource.participant[0].status"
    single = one(plugins, bad_appointment())  # a single resource: refused as before
    assert single.error is not None and single.error.location == "Appointment.participant[0].status"


@pytest.mark.parametrize("mapping", [LENIENT, STRICT], ids=["lenient", "strict"])
def test_a_transaction_with_an_invalid_mapped_resource_is_refused_whole(plugins, mapping) -> None:  # type: ignore[no-untyped-def]
    # even an optional element: a transaction is all or nothing for what the hub maps
    doc = bundle("transaction", post(LOCATION), post(patient(birthDate="1980-13-45")), post(BAD_OBSERVATION))
    result = one(plugins, doc, mapping)
    assert not result.records
    assert isinstance(result.error, ValidationError)
    assert result.error.location == "Bundle.entry[1].resource.birthDate"


def test_an_invalid_claim_line_amount_is_left_out_not_the_claim(plugins) -> None:  # type: ignore[no-untyped-def]
    claim = {"resourceType": "Claim", "id": "k1", "status": "active", "type": {"coding": [{"code": "professional"}]},
             "use": "claim", "patient": {"reference": "Patient/p1"}, "created": "2025-03-01",
             "provider": {"reference": "Practitioner/d1"}, "priority": {"coding": [{"code": "normal"}]},
             "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": "Coverage/c1"}}],
             "item": [{"sequence": 1, "productOrService": {"coding": [{"code": "99213"}]}, "servicedDate": "2025-03-01",
                       "net": {"value": "12,50", "currency": "USD"}}]}
    result = one(plugins, bundle("collection", {"resource": patient()}, {"resource": claim}))
    assert result.error is None
    assert kinds(result) == ["charge", "patient"]
    assert [path for path, _ in result.tally.invalid] == ["Bundle.entry[1].resource.item[0].net.value"]


# ---------------------------------------------------------------- Bundle types and entries

def test_a_document_bundle_is_read_for_its_resources(plugins) -> None:  # type: ignore[no-untyped-def]
    composition = {"resourceType": "Composition", "id": "c", "status": "final", "type": {"text": "summary"},
                   "date": "2025-01-01", "author": [{"reference": "Practitioner/d1"}], "title": "Summary"}
    doctor = {"resourceType": "Practitioner", "id": "d1", "name": [{"family": "Doctor"}]}
    result = one(plugins, bundle("document", {"resource": composition}, {"resource": patient()},
                                 {"resource": doctor}))
    assert result.error is None and kinds(result) == ["patient", "provider"]
    assert result.tally.not_mapped == {"Composition": 1}


@pytest.mark.parametrize("kind", ["transaction-response", "batch-response"])
def test_a_response_bundle_is_read_and_its_response_only_entries_counted(plugins, kind) -> None:  # type: ignore[no-untyped-def]
    doc = bundle(kind, {"resource": patient(), "response": {"status": "201 Created"}},
                 {"response": {"status": "200 OK", "location": "Patient/p2/_history/2"}},
                 {"response": {"status": "204 No Content"}})
    result = one(plugins, doc)
    assert result.error is None and kinds(result) == ["patient"]
    assert result.tally.notes == [
        "2 entries with only a response skipped (no resource to take in) (Bundle.entry[1], Bundle.entry[2])"]
    only = one(plugins, bundle(kind, {"response": {"status": "200 OK"}}))
    assert isinstance(only.error, ValidationError) and not only.records
    assert only.error.message.startswith("nothing to take in: 1 entry with only a response skipped")
    assert only.error.location == "Bundle.entry[0]"


def test_a_history_bundle_counts_its_deletions(plugins) -> None:  # type: ignore[no-untyped-def]
    doc = bundle("history", {"resource": patient(), "request": {"method": "PUT", "url": "Patient/p1"},
                             "response": {"status": "200"}},
                 {"request": {"method": "DELETE", "url": "Patient/p9"}, "response": {"status": "204"}})
    result = one(plugins, doc)
    assert kinds(result) == ["patient"]
    assert result.tally.notes == ["1 history entry without a resource skipped (deletions) (Bundle.entry[1])"]


def test_delete_and_get_entries_of_a_transaction_are_skipped_and_counted(plugins) -> None:  # type: ignore[no-untyped-def]
    doc = bundle("transaction", post(patient()),
                 {"request": {"method": "DELETE", "url": "Patient/p7"}},
                 {"request": {"method": "GET", "url": "Patient?name=x"}},
                 {"request": {"method": "DELETE", "url": "Patient/p8"}},
                 post(LOCATION))
    for mapping in (LENIENT, STRICT):
        result = one(plugins, doc, mapping)
        assert result.error is None and kinds(result) == ["location", "patient"]
        assert result.tally.notes == [
            "2 DELETE entries skipped: the hub keeps history and does not delete "
            "(Bundle.entry[1].request.method, Bundle.entry[3].request.method)",
            "1 GET entry skipped: a read is not answered from a pushed Bundle (Bundle.entry[2].request.method)"]
    deletes = one(plugins, bundle("transaction", {"request": {"method": "DELETE", "url": "Patient/p7"}}))
    assert isinstance(deletes.error, ValidationError)
    assert deletes.error.location == "Bundle.entry[0].request.method"
    assert "nothing to take in: 1 DELETE entry skipped" in deletes.error.message


def test_an_entry_without_a_resource_is_skipped_only_where_it_costs_nothing(plugins) -> None:  # type: ignore[no-untyped-def]
    doc = bundle("collection", {"resource": patient()}, {"fullUrl": "urn:uuid:1"})
    result = one(plugins, doc)
    assert kinds(result) == ["patient"]
    assert result.tally.notes == ["1 entry without a readable resource skipped (Bundle.entry[1])"]
    for refused in (one(plugins, doc, STRICT), one(plugins, {**doc, "type": "transaction"})):
        assert isinstance(refused.error, ParseError) and refused.error.location == "Bundle.entry[1]"
        assert not refused.records


def test_unmapped_types_are_counted_with_validation_off(plugins) -> None:  # type: ignore[no-untyped-def]
    mapping = Mapping(connectors={"fhir": {"validate": False}})
    result = one(plugins, bundle("collection", {"resource": BAD_OBSERVATION}, {"resource": patient()}), mapping)
    assert kinds(result) == ["patient"] and result.tally.not_mapped == {"Observation": 1}


# ---------------------------------------------------------------- the lenient reader itself

def test_lenient_reading_does_not_change_the_payload_and_keeps_a_valid_resource_as_is() -> None:
    valid = patient()
    assert validate_lenient(valid, "Patient") == (valid, [])
    bad = patient(telecom=[{"system": "phone", "value": 5}, {"system": "phone", "value": "555-0100"}])
    clean, dropped = validate_lenient(bad, "Bundle.entry[3].resource")
    assert dropped == [("Bundle.entry[3].resource.telecom[0].value", "Input should be a valid string")]
    assert clean["telecom"] == [{"system": "phone"}, {"system": "phone", "value": "555-0100"}]
    assert bad["telecom"][0]["value"] == 5  # the payload as sent is untouched


def test_an_invalid_id_leaves_the_resource_out() -> None:
    with pytest.raises(ValidationError) as caught:
        validate_lenient(patient(id="has space"), "Patient")
    assert caught.value.location == "Patient.id"


# ---------------------------------------------------------------- through the store

@pytest.fixture
def hub(runtime):  # type: ignore[no-untyped-def]
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "north", "North Synthetic Clinic")
    return runtime


def test_the_tally_is_kept_with_the_stored_message(hub) -> None:  # type: ignore[no-untyped-def]
    doc = bundle("collection", {"resource": BAD_OBSERVATION}, {"resource": LOCATION},
                 {"resource": patient(birthDate="1980-13-45")}, {"resource": bad_appointment()})
    receipts = receive(hub, "north", orjson.dumps(doc), connector="fhir", origin="partial.json")
    assert [r.status for r in receipts] == ["accepted"]
    with hub.engine.connect() as conn:
        [stored] = list_messages(conn, practice="north")
    assert stored["status"] == "processed"
    tally = stored["tally"]
    assert tally["mapped"] == 2 and tally["not_mapped"] == {"Observation": 1}
    assert [i["path"] for i in tally["invalid"]] == ["Bundle.entry[2].resource.birthDate", "Bundle.entry[3].resource"]


# ---------------------------------------------------------------- corpus files

def corpus_file(corpus: Path, rel: str) -> bytes:
    return (corpus / rel).read_bytes()


def test_corpus_carin_patient_with_a_list_for_a_period(plugins, corpus: Path) -> None:  # type: ignore[no-untyped-def]
    data = corpus_file(corpus, "fhir/carinkit__Patient__1.json")
    result = one(plugins, data)
    assert result.error is None and kinds(result) == ["patient"]
    assert [p for p, _ in result.tally.invalid] == ["Patient.address[0].period"]
    strict = one(plugins, data, STRICT)
    assert strict.error is not None and strict.error.location == "Patient.address[0].period"


def test_corpus_charge_item_with_mistyped_elements(plugins, corpus: Path) -> None:  # type: ignore[no-untyped-def]
    # overrideReason is a string in R4 (sent as an empty object); encounter and totalPriceComponent are no
    # ChargeItem elements; service[0] is a Reference whose reference is sent as an object
    result = one(plugins, corpus_file(corpus, "fhir/msfhirsrv__ChargeItem__2.json"))
    assert result.error is None and kinds(result) == ["charge"]
    assert sorted(p for p, _ in result.tally.invalid) == [
        "ChargeItem.encounter", "ChargeItem.overrideReason", "ChargeItem.service[0].reference",
        "ChargeItem.totalPriceComponent"]


def test_corpus_transaction_with_deletes_reads_and_parameters(plugins, corpus: Path) -> None:  # type: ignore[no-untyped-def]
    # five Patient POST/PUT, two DELETE, a Parameters POST, two GET
    result = one(plugins, corpus_file(corpus, "fhir/msfhirsrv__Bundle-transaction__2.json"))
    assert result.error is None and kinds(result) == ["patient"] * 5
    assert result.tally.not_mapped == {"Parameters": 1}
    assert [n.split(" skipped")[0] for n in result.tally.notes] == ["2 DELETE entries", "2 GET entries"]


def test_corpus_transaction_with_an_invalid_imaging_study(plugins, corpus: Path) -> None:  # type: ignore[no-untyped-def]
    # its ImagingStudy lacks a required sopClass: a type the hub does not map, so not validated
    result = one(plugins, corpus_file(corpus, "fhir/msfhirsrv__Bundle-transaction__3.json"))
    assert result.error is None and kinds(result) == ["patient"]
    assert result.tally.not_mapped == {"ImagingStudy": 1} and not result.tally.invalid


def test_corpus_transaction_of_observations_only_stays_refused(plugins, corpus: Path) -> None:  # type: ignore[no-untyped-def]
    result = one(plugins, corpus_file(corpus, "fhir/msfhirsrv__Bundle-transaction__4.json"))
    assert result.error is not None and "unsupported resource type Observation" in result.error.message
    assert result.tally.not_mapped == {"Observation": 2}


def test_corpus_batch_response(plugins, corpus: Path) -> None:  # type: ignore[no-untyped-def]
    # entry[0] a Patient, entry[1] an Encounter written straight into the entry (no resource), entry[2] an Observation
    result = one(plugins, corpus_file(corpus, "fhir/msfc__Bundle-batch-response__1.json"))
    assert result.error is None and kinds(result) == ["patient"]
    assert result.tally.not_mapped == {"Observation": 1}
    assert result.tally.notes == ["1 entry without a readable resource skipped (Bundle.entry[1])"]


def test_corpus_document_bundle(plugins, corpus: Path) -> None:  # type: ignore[no-untyped-def]
    # Composition, Practitioner, Patient, Encounter, Observation, MedicationRequest, MedicationStatement,
    # AllergyIntolerance
    result = one(plugins, corpus_file(corpus, "real/fhir/gfhir__Bundle-father.json"))
    assert result.error is None and kinds(result) == ["encounter", "patient", "provider"]
    assert result.tally.not_mapped == {"AllergyIntolerance": 1, "Composition": 1, "MedicationRequest": 1,
                                       "MedicationStatement": 1, "Observation": 1}


def test_corpus_transaction_response(plugins, corpus: Path) -> None:  # type: ignore[no-untyped-def]
    # a Patient, seven entries with only a response, a Parameters and a Bundle
    result = one(plugins, corpus_file(corpus, "real/fhir/gfhir__Bundle-bundle-response.json"))
    assert result.error is None and kinds(result) == ["patient"]
    assert result.tally.not_mapped == {"Bundle": 1, "Parameters": 1}
    [note] = result.tally.notes
    assert note.startswith("7 entries with only a response skipped")


def test_corpus_search_with_only_a_warning_is_refused_as_unmapped(plugins, corpus: Path) -> None:  # type: ignore[no-untyped-def]
    result = one(plugins, corpus_file(corpus, "real/fhir/gfhir__Bundle-bundle-search-warning.json"))
    assert result.error is not None and "unsupported resource type OperationOutcome" in result.error.message


def test_corpus_v2_to_fhir_transaction_with_an_invalid_patient_is_refused_whole(plugins, corpus: Path) -> None:  # type: ignore[no-untyped-def]
    # its MessageHeader (entry 11, response.identifier not an id) is not mapped, so not checked; its Patient
    # (entry 12) carries an extension dateTime that is no FHIR dateTime: a transaction is all or nothing
    result = one(plugins, corpus_file(corpus, "real/fhir/v2tofhir__FHIR_bundle.hl7_ADT_A01.json"))
    assert result.error is not None and not result.records
    assert result.error.location == "Bundle.entry[12].resource.extension[0].valueDateTime"


def test_an_empty_bundle_is_refused_unless_it_answers_a_search_or_history(plugins) -> None:  # type: ignore[no-untyped-def]
    for kind in ("collection", "transaction", "batch-response", "document"):
        result = one(plugins, bundle(kind))
        assert isinstance(result.error, ValidationError) and result.error.location == "Bundle.entry", kind
        assert f"the {kind} Bundle has no entries: nothing to take in" in result.error.message
    for kind in ("searchset", "history"):
        result = one(plugins, bundle(kind))
        assert result.error is None and not result.records
        assert result.tally.notes == [f"the {kind} Bundle has no entries"]


def test_the_transaction_response_says_a_skipped_delete_was_not_taken_in() -> None:
    from hub_fhir import FhirConnector

    from hub.connector import Outcome

    connector = FhirConnector()
    payload = orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Location", "id": "L1", "name": "Main"},
         "request": {"method": "PUT", "url": "Location/L1"}},
        {"request": {"method": "DELETE", "url": "Patient/9"}}]})
    (envelope,) = connector.split(payload)
    body, _ = connector.answer([(envelope, Outcome(accepted=True, message_id=1))])
    first, second = orjson.loads(body)["entry"]
    assert first["response"]["status"].startswith("20")
    said = second["response"]["outcome"]["issue"][0]["diagnostics"]
    assert "None" not in said and "no resource: not taken in" in said
