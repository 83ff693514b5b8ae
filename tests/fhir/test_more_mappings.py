"""Resources sent without id (source id from the business identifier), PaymentReconciliation as
remittances, and ServiceRequests whose performer is named only by display. Facts written by hand from
small synthetic resources and from the corpus files named (values read from the files)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hub.errors import HubError
from hub.pipeline.normalize import Normalized, normalize_payload
from hub.plugins import load_plugins
from tests.fhir.test_real_payloads import bundle, kind, run

NPI = "http://hl7.org/fhir/sid/us-npi"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
PAYMENT_TYPE = "http://terminology.hl7.org/CodeSystem/payment-type"
SNOMED = "http://snomed.info/sct"
NOTE = "sent without id or fullUrl, source id taken from its identifier"


def corpus_file(corpus: Path, folder: str, name: str) -> Normalized:
    results = normalize_payload(load_plugins(), (corpus / folder / name).read_bytes(), practice="corpus",
                                origin=name)
    assert len(results) == 1 and results[0].error is None, [str(r.error) for r in results]
    return results[0]


# ---------------------------------------------------------------- 1. source id from the identifier
def test_a_patient_without_id_is_keyed_by_its_medical_record_number_and_the_note_says_so() -> None:
    patient = {"resourceType": "Patient", "name": [{"family": "Roe", "given": ["Ann"]}],
               "identifier": [{"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-00-1111"},
                              {"type": {"coding": [{"system": V2_0203, "code": "MR"}]},
                               "system": "urn:oid:1.2.3", "value": "MRN-77"}]}
    records, tally = run(patient)
    assert [r["source_id"] for r in records] == ["MRN-77"]
    assert records[0]["family_name"] == "Roe"
    assert tally.notes == [f"Patient: {NOTE}"]
    assert "MRN-77" not in " ".join(tally.notes)


def test_a_system_naming_an_mrn_is_preferred_then_the_first_identifier_not_marked_old() -> None:
    by_system = {"resourceType": "Patient", "identifier": [
        {"system": "http://clinic.example/visit", "value": "V-1"},
        {"system": "http://clinic.example/MRN", "value": "44"}]}
    assert run(by_system)[0][0]["source_id"] == "44"
    plain = {"resourceType": "Patient", "identifier": [
        {"system": "http://clinic.example/old", "value": "O-1", "use": "old"},
        {"system": "http://clinic.example/empty"},
        {"system": "http://clinic.example/ids", "value": "P-2"},
        {"system": "http://clinic.example/other", "value": "P-3"}]}
    assert run(plain)[0][0]["source_id"] == "P-2"


def test_a_patient_with_neither_id_fullurl_nor_identifier_is_still_refused() -> None:
    with pytest.raises(HubError, match="Patient has neither an id nor a fullUrl, nor an identifier"):
        run({"resourceType": "Patient", "name": [{"family": "Roe"}]})


def test_references_by_any_identifier_resolve_to_the_source_id_taken_from_it() -> None:
    patient = {"resourceType": "Patient", "identifier": [
        {"system": "http://clinic.example/ids", "value": "X-5"},
        {"type": {"coding": [{"code": "MR"}]}, "system": "http://clinic.example/charts", "value": "C-9"}]}
    visit = {"resourceType": "Encounter", "id": "e1", "status": "finished",
             "subject": {"identifier": {"system": "http://clinic.example/ids", "value": "X-5"}}}
    records, tally = run(bundle(patient, visit))
    assert kind(records, "patient")[0]["source_id"] == "C-9"
    assert kind(records, "encounter")[0]["patient_source_id"] == "C-9"
    assert tally.notes == [f"Bundle.entry[0].resource: {NOTE}"]


def test_a_practitioner_without_id_is_keyed_by_its_npi_and_a_claim_by_its_number() -> None:
    doctor = {"resourceType": "Practitioner", "name": [{"family": "Lee"}],
              "identifier": [{"system": "http://clinic.example/staff", "value": "S-3"},
                             {"system": NPI, "value": "1234567893"}]}
    records, _ = run(doctor)
    assert (records[0]["source_id"], records[0]["npi"]) == ("1234567893", "1234567893")
    claim = {"resourceType": "Claim", "use": "claim", "created": "2025-02-01",
             "identifier": [{"system": "http://clinic.example/claims", "value": "CLM-8"}],
             "item": [{"sequence": 1, "productOrService": {"coding": [{"code": "99213"}]},
                       "servicedDate": "2025-02-01", "net": {"value": 90}}]}
    records, tally = run(claim)
    assert [r["source_id"] for r in records] == ["CLM-8-1"]
    assert tally.notes == [f"Claim: {NOTE}"]


def test_a_coverage_without_id_is_not_keyed_by_its_member_id() -> None:
    coverage = {"resourceType": "Coverage", "status": "active", "beneficiary": {"reference": "Patient/p1"},
                "identifier": [{"type": {"coding": [{"code": "MB"}]}, "value": "M-100"}],
                "payor": [{"display": "Acme Health"}]}
    with pytest.raises(HubError, match="Coverage has neither an id nor a fullUrl to take"):
        run(coverage)


def test_corpus_patient_sent_without_id_is_taken_under_its_identifier(corpus: Path) -> None:
    result = corpus_file(corpus, "fhir", "msfhirsrv__Patient__3.json")
    [patient] = result.records
    assert patient["source_id"] == "234234"
    assert (patient["family_name"], patient["given_name"]) == ("Chalmers", "Peter")
    assert (patient["birth_date"], patient["sex"]) == (dt.date(1974, 12, 25), "male")
    assert result.tally.notes == [f"Patient: {NOTE}"]


# ---------------------------------------------------------------- 2. PaymentReconciliation
def detail(kind_code: str, amount: float, **extra: Any) -> dict[str, Any]:
    return {"type": {"coding": [{"system": PAYMENT_TYPE, "code": kind_code}]},
            "amount": {"value": amount, "currency": "USD"}, **extra}


def test_payment_details_give_remittances_and_advances_are_counted() -> None:
    claim = {"resourceType": "Claim", "id": "c1", "use": "claim", "created": "2025-03-01",
             "identifier": [{"system": "http://clinic.example/claims", "value": "CLM-9"}],
             "item": [{"sequence": 1, "productOrService": {"coding": [{"code": "99214"}]},
                       "servicedDate": "2025-03-01", "net": {"value": 150}}]}
    payer = {"resourceType": "Organization", "id": "org1", "name": "Acme Health"}
    reconciliation = {
        "resourceType": "PaymentReconciliation", "id": "pr1", "status": "active", "created": "2025-03-10",
        "paymentIssuer": {"reference": "Organization/org1"}, "paymentDate": "2025-03-10",
        "paymentAmount": {"value": 215.5, "currency": "USD"},
        "paymentIdentifier": {"system": "http://payer.example/eft", "value": "EFT-1"},
        "detail": [
            detail("payment", 120.5, identifier={"value": "D1"}, date="2025-03-08",
                   request={"identifier": {"system": "http://clinic.example/claims", "value": "CLM-9"}}),
            detail("payment", 60, request={"reference": "ChargeItem/ci7"}),
            detail("advance", -25, identifier={"value": "D3"}, date="2025-03-08"),
            detail("payment", 60, identifier={"value": "D4"}, request={"reference": "Claim/zz"}),
        ]}
    records, tally = run(bundle(claim, payer, reconciliation))
    remits = {r["source_id"]: r for r in kind(records, "remittance")}
    assert set(remits) == {"D1", "pr1-2", "D4"}
    assert remits["D1"] == {"kind": "remittance", "practice": "p", "source_id": "D1", "claim_id": "c1",
                            "paid_amount": "120.50", "paid_on": "2025-03-08", "payer_name": "Acme Health",
                            "trace_number": "EFT-1"}
    assert remits["pr1-2"]["charge_source_id"] == "ci7" and "claim_id" not in remits["pr1-2"]
    assert (remits["pr1-2"]["paid_amount"], remits["pr1-2"]["paid_on"]) == ("60.00", "2025-03-10")
    assert remits["D4"]["claim_id"] == "zz"
    assert tally.not_mapped == {"PaymentReconciliation.detail (advance)": 1}
    assert len(kind(records, "charge")) == 1


def test_payment_reconciliation_payer_falls_back_to_the_issuers_display() -> None:
    reconciliation = {"resourceType": "PaymentReconciliation", "id": "pr2", "status": "active",
                      "created": "2025-04-01", "paymentDate": "2025-04-02",
                      "paymentAmount": {"value": 10, "currency": "USD"},
                      "paymentIssuer": {"reference": "Organization/elsewhere", "display": "Beta Mutual"},
                      "detail": [detail("payment", 10, request={"reference": "Claim/c2"})]}
    [remit], tally = run(reconciliation)
    assert (remit["source_id"], remit["claim_id"], remit["payer_name"]) == ("pr2-1", "c2", "Beta Mutual")
    assert remit["paid_on"] == "2025-04-02" and not tally.not_mapped


def test_corpus_payment_reconciliation_gives_its_two_payments(corpus: Path) -> None:
    result = corpus_file(corpus, "fhir", "msfhirsrv__PaymentReconciliation__1.json")
    remits = {r["source_id"]: r for r in result.records}
    assert set(remits) == {"10-12345-001", "10-12345-002"}
    first, second = remits["10-12345-001"], remits["10-12345-002"]
    # the first names its claim by business identifier, the second by an absolute URL
    assert (first["claim_id"], first["paid_amount"], first["paid_on"]) == \
        ("AB12345", Decimal("3500.00"), dt.date(2014, 8, 16))
    assert (second["claim_id"], second["paid_amount"], second["paid_on"]) == \
        ("225476332699", Decimal("4000.00"), dt.date(2014, 8, 12))
    # the issuer, Organization/2, is not in the payload: its id stands for the payer
    assert first["payer_name"] == second["payer_name"] == "2"
    assert first["trace_number"] == "10-12345"
    assert result.tally.not_mapped == {"PaymentReconciliation.detail (advance)": 1}


# ---------------------------------------------------------------- 3. ServiceRequest performed by display
def service_request(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "ServiceRequest", "id": "sr1", "status": "active", "intent": "order",
            "subject": {"reference": "Patient/p1"}, "authoredOn": "2025-05-02",
            "code": {"coding": [{"system": SNOMED, "code": "710830005"}]}, **extra}


def test_a_service_by_a_clinician_named_only_by_display_is_a_referral() -> None:
    records, tally = run(service_request(requester={"display": "Ollie Ortho, MD"},
                                         performer=[{"display": "Paul Therapist, PT"}]))
    assert records == [{"kind": "referral", "practice": "p", "source_id": "sr1", "patient_source_id": "p1",
                        "specialty": "710830005", "received_on": "2025-05-02", "status": "active"}]
    assert not tally.not_mapped
    typed, _ = run(service_request(performer=[{"type": "Practitioner", "display": "Lee"}]))
    assert [r["kind"] for r in typed] == ["referral"]


@pytest.mark.parametrize("extra", [
    {"performer": [{"display": "Acme Imaging Center"}]},  # no clinician: a place
    {"performer": [{"display": "Acme Lab, Pittsburgh PA"}]},  # a state after the comma, not a credential
    {"performer": [{"display": "Paul Therapist, PT"}], "requester": {"display": "Paul  Therapist, PT"}},
    {"performer": [{"display": "Dr. Ray Gunn"}], "code": {"coding": [{"system": "http://loinc.org",
                                                                       "code": "24627-2"}]}},
    {"performer": [{"display": "Dr. Ray Gunn"}], "category": [{"coding": [{"code": "imaging"}]}]},
    {"performer": [{"display": "Jane Roe, MD"}], "category": [{"coding": [{"system": SNOMED,
                                                                            "code": "108252007"}]}]},
])
def test_orders_stay_orders(extra: dict[str, Any]) -> None:
    records, tally = run(service_request(**extra))
    assert records == []
    assert tally.not_mapped == {"ServiceRequest (an order, not a referral)": 1}


def test_corpus_service_requests_performed_by_another_clinician(corpus: Path) -> None:
    therapy = corpus_file(corpus, "real/fhir", "gfhir__ServiceRequest-physical-therapy.json")
    [referral] = therapy.records
    assert (referral["kind"], referral["source_id"], referral["patient_source_id"]) == \
        ("referral", "physical-therapy", "example")
    assert (referral["specialty"], referral["received_on"], referral["status"]) == \
        ("710830005", dt.date(2016, 9, 20), "completed")
    assert referral.get("referring_provider") is None  # the requester is named only by display
    birth = corpus_file(corpus, "real/fhir", "gfhir__ServiceRequest-ob.json")
    [referral] = birth.records
    assert (referral["source_id"], referral["specialty"], referral["status"]) == ("ob", "22633006", "completed")
    assert referral.get("patient_source_id") is None and referral.get("received_on") is None


@pytest.mark.parametrize("name", ["gfhir__ServiceRequest-di.json", "gfhir__ServiceRequest-physiotherapy.json"])
def test_corpus_orders_without_another_clinician_stay_orders(corpus: Path, name: str) -> None:
    # a LOINC-coded chest CT; a physiotherapy regime with no performer named
    result = corpus_file(corpus, "real/fhir", name)
    assert result.records == []
    assert result.tally.not_mapped == {"ServiceRequest (an order, not a referral)": 1}
