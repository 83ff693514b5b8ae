"""Real payloads (Synthea, CARIN Blue Button, the R4 examples): claims, adjudications, conditional references,
organizations, schedules, names. Facts written by hand from small synthetic resources, and one Synthea
bundle of the corpus counted independently of the connector."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hub_fhir import FhirConnector

from hub.connector import Context, Tally
from hub.pipeline.normalize import normalize_payload
from hub.plugins import load_plugins

NPI = "http://hl7.org/fhir/sid/us-npi"
BB = "https://bluebutton.cms.gov/resources/codesystem/adjudication"
BB_VAR = "https://bluebutton.cms.gov/resources/variables/"
C4BB = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBAdjudication"
SYNTHEA = "fdp__Bob965_Keeling57_3f6fd0bb-6cd3-eb3f-4401-cd38ace25f2b.json"


def run(doc: dict[str, Any]) -> tuple[list[dict[str, Any]], Tally]:
    """The records of a payload (every message of it) and the tally of what was left out. The resources
    here carry only what the mapping reads, so the R4 validation is off (the Synthea test validates)."""
    connector = FhirConnector()
    records: list[dict[str, Any]] = []
    tally = Tally()
    for envelope in connector.split(orjson.dumps(doc)):
        context = Context(practice="p", origin="t.json", config={"validate": False})
        records += connector.normalize(envelope, context)
        tally.add(context.tally.as_dict())
    return records, tally


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def kind(records: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [r for r in records if r["kind"] == name]


def adj(category: str, amount: float | None = None, system: str | None = None) -> dict[str, Any]:
    line: dict[str, Any] = {"category": {"coding": [{"system": system, "code": category} if system
                                                    else {"code": category}]}}
    if amount is not None:
        line["amount"] = {"value": amount, "currency": "USD"}
    return line


def bb(variable: str, amount: float) -> dict[str, Any]:
    return adj(BB_VAR + variable, amount, BB)


def claim(*items: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Claim", "id": "k1", "status": "active", "use": "claim", "created": "2025-03-01",
            "patient": {"reference": "Patient/p1"}, "item": list(items), **extra}


def line(seq: int, **extra: Any) -> dict[str, Any]:
    return {"sequence": seq, "productOrService": {"coding": [{"code": "99213"}]}, "servicedDate": "2025-03-01",
            **extra}


# ---------------------------------------------------------------- claims
def test_claim_lines_are_priced_from_net_else_unit_price_times_quantity_else_kept_unpriced() -> None:
    records, _ = run(claim(
        line(1, net={"value": 150.0, "currency": "USD"}, unitPrice={"value": 1.0}, quantity={"value": 9}),
        line(2, unitPrice={"value": 20.5, "currency": "USD"}, quantity={"value": 3}),
        line(3, unitPrice={"value": 42.0, "currency": "USD"}),  # no quantity: one
        line(4)))  # no price at all: kept, flagged
    charges = {c["source_id"]: c for c in kind(records, "charge")}
    assert charges["k1-1"]["amount"] == "150.00"
    assert charges["k1-2"]["amount"] == "61.50" and charges["k1-2"]["units"] == 3
    assert charges["k1-3"]["amount"] == "42.00"
    assert "amount" not in charges["k1-4"] and charges["k1-4"]["unpriced"] is True
    assert charges["k1-4"]["procedure_code"] == "99213" and charges["k1-4"]["service_date"] == "2025-03-01"
    assert not any(c.get("unpriced") for key, c in charges.items() if key != "k1-4")


@pytest.mark.parametrize("use", ["preauthorization", "predetermination"])
def test_a_preauthorization_or_predetermination_is_not_a_charge_and_is_counted(use: str) -> None:
    records, tally = run(bundle({"resourceType": "Patient", "id": "p1"},
                                claim(line(1, net={"value": 80.0}), use=use)))
    assert kind(records, "charge") == [] and len(kind(records, "patient")) == 1
    assert tally.not_mapped == {f"Claim ({use})": 1}


def test_a_claim_without_insurer_takes_its_payer_from_the_focal_coverage() -> None:
    payer = {"resourceType": "Organization", "id": "o7", "name": "Synthetic Health Plan"}
    cov = {"resourceType": "Coverage", "id": "c1", "status": "active", "beneficiary": {"reference": "Patient/p1"},
           "payor": [{"reference": "Organization/o7"}]}
    records, _ = run(bundle(payer, cov, claim(line(1, net={"value": 10}), insurance=[
        {"sequence": 1, "focal": True, "coverage": {"reference": "Coverage/c1"}}])))
    [charge] = kind(records, "charge")
    assert charge["payer_name"] == "Synthetic Health Plan"
    records, _ = run(claim(line(1, net={"value": 10}), insurance=[{"focal": True, "coverage": {"display": "Aetna"}}]))
    assert kind(records, "charge")[0]["payer_name"] == "Aetna"


# ---------------------------------------------------------------- adjudications
def eob(*items: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"resourceType": "ExplanationOfBenefit", "id": "e1", "status": "active", "use": "claim",
            "created": "2025-03-20", "patient": {"reference": "Patient/p1"}, "outcome": "complete",
            "claim": {"reference": "Claim/k1"}, "insurer": {"display": "Medicare"}, "item": list(items), **extra}


def test_blue_button_line_codes_give_the_provider_payment_and_the_patient_share() -> None:
    item = {"sequence": 2, "adjudication": [
        bb("line_coinsrnc_amt", 28.104000000000003), bb("line_prvdr_pmt_amt", 112.41600000000001),
        bb("line_sbmtd_chrg_amt", 160.52), bb("line_alowd_chrg_amt", 140.52),
        bb("line_bene_ptb_ddctbl_amt", 0), {"category": {"coding": [{"system": BB,
                                                                     "code": BB_VAR + "line_prcsg_ind_cd"}]}}]}
    [remit] = kind(run(eob(item))[0], "remittance")
    assert remit["source_id"] == "e1-2" and remit["charge_source_id"] == "k1-2" and remit["claim_id"] == "k1"
    assert remit["paid_amount"] == "112.42"  # 112.416 to the cent
    # coinsurance is the patient's (PR 2); the deductible of zero adjusts nothing; 160.52 - 140.52 not allowed
    assert remit["adjustments"] == [{"group": "PR", "reason": "2", "amount": "28.10"},
                                    {"group": "CO", "reason": "45", "amount": "20.00"}]
    assert remit["adjustment_amount"] == "48.10" and remit["payer_name"] == "Medicare"


def test_carin_codes_paid_to_provider_wins_over_benefit_and_what_the_patient_paid_is_not_a_payment() -> None:
    item = {"sequence": 1, "adjudication": [
        adj("submitted", 200, "http://terminology.hl7.org/CodeSystem/adjudication"),
        adj("benefit", 150, "http://terminology.hl7.org/CodeSystem/adjudication"),
        adj("paidtoprovider", 120, C4BB), adj("paidtoprovider", 10, C4BB),
        adj("paidbypatient", 20, C4BB), adj("memberliability", 50, C4BB), adj("noncovered", 0, C4BB)]}
    [remit] = kind(run(eob(item))[0], "remittance")
    assert remit["paid_amount"] == "130.00"  # 120 + 10 paid to the provider; the benefit (150) is not read then
    assert remit["adjustments"] == [{"group": "PR", "reason": "memberliability", "amount": "50.00"}]
    item["adjudication"] = [adj("benefit", 150), adj("copay", 25)]
    [remit] = kind(run(eob(item))[0], "remittance")
    assert remit["paid_amount"] == "150.00"
    assert remit["adjustments"] == [{"group": "PR", "reason": "3", "amount": "25.00"}]


def test_items_without_adjudication_give_one_remittance_from_the_header_total_or_payment() -> None:
    items = [{"sequence": 1}, {"sequence": 2}]
    total = [adj("submitted", 7147.2), adj("eligible", 1542.01), adj("copay", 120), adj("benefit", 1393.57)]
    records, _ = run(eob(*items, total=total))
    [remit] = kind(records, "remittance")
    assert remit["source_id"] == "e1" and remit["claim_id"] == "k1" and "charge_source_id" not in remit
    assert remit["paid_amount"] == "1393.57"
    assert {"group": "PR", "reason": "3", "amount": "120.00"} in remit["adjustments"]
    records, _ = run(eob(*items, total=[adj("submitted", 100)],
                         payment={"amount": {"value": 64.2}, "date": "2025-04-02"}))
    [remit] = kind(records, "remittance")
    assert remit["paid_amount"] == "64.20" and remit["paid_on"] == "2025-04-02"
    # lines with their submitted amounts only, the payment in the header (the CARIN BB oral EOB): the header
    lines = [{"sequence": 1, "adjudication": [adj("submitted", 190)]},
             {"sequence": 2, "adjudication": [adj("submitted", 220)]}]
    records, _ = run(eob(*lines, total=[adj("submitted", 410), adj("benefit", 350), adj("paidtoprovider", 350, C4BB)]))
    [remit] = kind(records, "remittance")
    assert (remit["source_id"], remit["paid_amount"]) == ("e1", "350.00")


def test_claim_response_add_items_are_read_and_the_claim_is_found_by_its_business_identifier() -> None:
    the_claim = claim(line(1, net={"value": 100}), line(2, net={"value": 50}),
                      identifier=[{"system": "urn:practice:claims", "value": "CLM-0042"}])
    response = {"resourceType": "ClaimResponse", "id": "r1", "status": "active", "use": "claim",
                "created": "2025-03-25", "patient": {"reference": "Patient/p1"}, "outcome": "partial",
                "insurer": {"display": "Synthetic Mutual"},
                "request": {"identifier": {"system": "urn:practice:claims", "value": "CLM-0042"}},
                "item": [{"itemSequence": 1, "adjudication": [adj("submitted", 100), adj("benefit", 80)]}],
                "addItem": [{"itemSequence": [2], "productOrService": {"coding": [{"code": "99212"}]},
                             "adjudication": [adj("eligible", 40), adj("benefit", 32)]}]}
    records, _ = run(bundle(the_claim, response))
    remits = {r["source_id"]: r for r in kind(records, "remittance")}
    assert set(remits) == {"r1-1", "r1-add1"}
    # the claim is in the payload: its lines are named; claim_id is the claim's number (as on its charges)
    assert (remits["r1-1"]["claim_id"], remits["r1-1"]["charge_source_id"], remits["r1-1"]["paid_amount"]) == \
        ("CLM-0042", "k1-1", "80.00")
    assert (remits["r1-add1"]["charge_source_id"], remits["r1-add1"]["paid_amount"]) == ("k1-2", "32.00")
    assert {(c["claim_id"], c["claim_line"]) for c in kind(records, "charge")} == {("CLM-0042", 1), ("CLM-0042", 2)}
    # the claim elsewhere: the identifier's value names it, and each line its claim line (the store links them)
    records, _ = run(response)
    assert {(r["claim_id"], r.get("charge_source_id"), r["claim_line"]) for r in kind(records, "remittance")} == {
        ("CLM-0042", None, 1), ("CLM-0042", None, 2)}


# ---------------------------------------------------------------- references
def practitioner(pid: str, npi: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Practitioner", "id": pid, "identifier": [{"system": NPI, "value": npi}], **extra}


def test_conditional_references_resolve_by_identifier_else_keep_the_identifier() -> None:
    loc = {"resourceType": "Location", "id": "L1", "name": "Clinic",
           "identifier": [{"system": "https://example.org/sites", "value": "site-9"}]}
    enc = {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"},
           "subject": {"reference": "Patient?identifier=urn:mrn|M1"},
           "participant": [{"individual": {"reference": f"Practitioner?identifier={NPI}|1234567893"}}],
           "location": [{"location": {"reference": "Location?identifier=https://example.org/sites|site-9"}}]}
    patient = {"resourceType": "Patient", "id": "p1", "identifier": [{"system": "urn:mrn", "value": "M1"}]}
    records, _ = run(bundle(patient, practitioner("dr1", "1234567893"), loc, enc))
    [e] = kind(records, "encounter")
    assert (e["patient_source_id"], e["provider_source_id"], e["location_source_id"]) == ("p1", "dr1", "L1")
    # nothing in the payload carries it: the NPI is the key, so the provider with that NPI matches
    appt = {"resourceType": "Appointment", "id": "a1", "status": "booked", "start": "2025-05-01T09:00:00Z",
            "participant": [{"actor": {"reference": f"Practitioner?identifier={NPI}%7C1234567893"},
                             "status": "accepted"}]}
    [a] = kind(run(appt)[0], "appointment")
    assert (a["provider_source_id"], a["provider_npi"]) == ("1234567893", "1234567893")
    # an Organization is no provider: a claim billed by one has no provider
    billed = claim(line(1, net={"value": 5}),
                   provider={"reference": "Organization?identifier=https://github.com/synthetichealth/synthea|x1"})
    [charge] = kind(run(billed)[0], "charge")
    assert "provider_source_id" not in charge


def test_a_practitioner_role_naming_its_practitioner_by_npi_makes_one_provider() -> None:
    role = {"resourceType": "PractitionerRole", "id": "role9",
            "practitioner": {"identifier": {"system": NPI, "value": "1234567893"}, "display": "Dr. A B"},
            "specialty": [{"coding": [{"code": "208D00000X"}]}]}
    records, _ = run(bundle(practitioner("dr1", "1234567893", name=[{"family": "Osler", "given": ["W"]}]), role))
    [provider] = kind(records, "provider")
    assert (provider["source_id"], provider["npi"], provider["family_name"], provider["specialty"]) == \
        ("dr1", "1234567893", "Osler", "208D00000X")
    # the role alone (a batch entry of its own): keyed by the NPI, carrying it and the name its reference shows
    [provider] = kind(run(role)[0], "provider")
    assert (provider["source_id"], provider["npi"], provider["family_name"], provider["given_name"]) == \
        ("1234567893", "1234567893", "B", "A")


def test_organizations_name_payers_and_say_what_they_were_used_for() -> None:
    org = {"resourceType": "Organization", "id": "2", "name": "Synthetic Mutual",
           "identifier": [{"system": "urn:payers", "value": "SM-1"}]}
    cov = {"resourceType": "Coverage", "id": "c1", "status": "active", "beneficiary": {"reference": "Patient/p1"},
           "payor": [{"reference": "Organization?identifier=urn:payers|SM-1"}]}
    records, tally = run(bundle(org, cov, claim(line(1, net={"value": 10}), insurer={"reference": "Organization/2"}),
                                eob({"sequence": 1, "adjudication": [adj("benefit", 5)]},
                                    insurer={"reference": "Organization/2"})))
    assert {r["payer_name"] for r in records if r["kind"] in ("coverage", "charge", "remittance")} == \
        {"Synthetic Mutual"}
    assert tally.notes == ["Organization used only as a reference: payer name of 1 claim, payer name of 1 coverage, "
                           "payer name of 1 explanation of benefit"]
    records, tally = run(org)
    assert records == [] and tally.notes == ["Organization used only as a reference"]


def test_a_slot_takes_its_provider_and_location_from_its_schedule() -> None:
    schedule = {"resourceType": "Schedule", "id": "s1", "actor": [
        {"reference": f"Practitioner?identifier={NPI}|1234567893"}, {"reference": "Location/L1"}]}
    slot = {"resourceType": "Slot", "id": "sl1", "schedule": {"reference": "Schedule/s1"}, "status": "free",
            "start": "2025-05-01T09:00:00Z", "end": "2025-05-01T09:20:00Z"}
    records, tally = run(bundle(practitioner("dr1", "1234567893"), schedule, slot))
    [s] = kind(records, "slot")
    assert (s["provider_source_id"], s["location_source_id"], s["duration_min"]) == ("dr1", "L1", 20)
    assert "Schedule used only as a reference: provider and location of 1 slot" in tally.notes


# ---------------------------------------------------------------- names, appointments, encounters, referrals
@pytest.mark.parametrize(("text", "family", "given"), [
    ("Adam Careful", "Careful", "Adam"),
    ("Dr. Mary Ann Smith", "Smith", "Mary Ann"),
    ("Careful, Adam", "Careful", "Adam"),
    ("Paul Therapist, PT", "Therapist", "Paul"),
    ("Ollie Ortho, MD", "Ortho", "Ollie"),
    ("Cher", "Cher", None),
])
def test_a_name_given_only_as_text_is_split(text: str, family: str, given: str | None) -> None:
    [p] = run({"resourceType": "Practitioner", "id": "x", "name": [{"text": text}]})[0]
    assert (p["family_name"], p.get("given_name")) == (family, given)
    [p] = run({"resourceType": "Patient", "id": "x", "name": [{"text": text}]})[0]
    assert (p["family_name"], p.get("given_name")) == (family, given)


@pytest.mark.parametrize("status", ["proposed", "waitlist"])
def test_an_appointment_without_start_that_fhir_allows_is_left_out_and_counted(status: str) -> None:
    appt = {"resourceType": "Appointment", "id": "a1", "status": status,
            "participant": [{"actor": {"reference": "Patient/p1"}, "status": "needs-action"}]}
    records, tally = run(bundle({"resourceType": "Patient", "id": "p1"}, appt))
    assert [r["kind"] for r in records] == ["patient"]
    assert tally.not_mapped == {"Appointment (no start)": 1}


def test_the_cancellation_date_extension_gives_cancelled_at() -> None:
    ext = [{"url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment.cancellationDate",
            "valueDateTime": "2025-04-30T16:05:00-04:00"}]
    appt = {"resourceType": "Appointment", "id": "a1", "status": "cancelled", "start": "2025-05-01T09:00:00-04:00",
            "extension": ext, "participant": [{"actor": {"reference": "Patient/p1"}, "status": "declined"}]}
    [a] = run(appt)[0]
    assert a["cancelled_at"] == "2025-04-30T16:05:00-04:00"
    appt["status"] = "booked"  # a stale extension on an appointment not cancelled says nothing
    assert "cancelled_at" not in run(appt)[0][0]


@pytest.mark.parametrize(("klass", "expected"), [
    ({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "EMER"}, "EMER"),
    ({"code": "imp"}, "IMP"), ({"code": "ambulatory"}, "AMB"), ({"code": "XYZ"}, None)])
def test_encounter_class_is_the_v3_act_encounter_code(klass: dict[str, str], expected: str | None) -> None:
    [e] = run({"resourceType": "Encounter", "id": "e1", "status": "finished", "class": klass})[0]
    assert e.get("encounter_class") == expected


def test_a_service_request_is_a_referral_only_when_it_is_one() -> None:
    def request(**extra: Any) -> dict[str, Any]:
        return {"resourceType": "ServiceRequest", "id": "sr1", "status": "active", "intent": "order",
                "subject": {"reference": "Patient/p1"}, "authoredOn": "2025-02-03",
                "requester": {"reference": "Practitioner/dr1"}, **extra}
    by_category = request(category=[{"coding": [{"system": "http://snomed.info/sct", "code": "3457005"}]}],
                          performerType={"coding": [{"code": "207RC0000X"}]})
    [r] = run(by_category)[0]
    assert (r["kind"], r["patient_source_id"], r["specialty"], r["received_on"]) == \
        ("referral", "p1", "207RC0000X", "2025-02-03")
    # sent to another clinician for a procedure (the R4 colonoscopy example): a referral
    to_colleague = request(code={"coding": [{"system": "http://snomed.info/sct", "code": "73761001"}]},
                           performer=[{"reference": "Practitioner/dr2"}])
    assert [r["kind"] for r in run(to_colleague)[0]] == ["referral"]
    # a lab test (LOINC), even with a performer, and an imaging order: not referrals, counted with the reason
    for order in (request(code={"coding": [{"system": "http://loinc.org", "code": "35542-0"}]},
                          performer=[{"reference": "Practitioner/dr2"}]),
                  request(category=[{"coding": [{"system": "http://snomed.info/sct", "code": "363679005"}]}]),
                  request(code={"text": "Physiotherapy of chest"})):
        records, tally = run(order)
        assert records == [] and tally.not_mapped == {"ServiceRequest (an order, not a referral)": 1}


# ---------------------------------------------------------------- a Synthea bundle, end to end
def _paid_to_provider(item: dict[str, Any]) -> Decimal:
    """The rule, written plainly: a line's payment is the sum of its Blue Button provider payment amounts."""
    total = Decimal(0)
    for a in item.get("adjudication", []):
        for coding in a["category"]["coding"]:
            if coding["code"].endswith("/line_prvdr_pmt_amt") and "amount" in a:
                total += Decimal(repr(a["amount"]["value"]))
    return total.quantize(Decimal("0.01"))


def test_a_synthea_bundle_loads_with_its_patient_encounters_claims_and_payments(corpus: Path) -> None:
    path = corpus / "real" / "fhir" / SYNTHEA
    doc = json.loads(path.read_text(encoding="utf-8"))
    resources = [e["resource"] for e in doc["entry"]]
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    encounters = [r for r in resources if r["resourceType"] == "Encounter"]
    claims = [r for r in resources if r["resourceType"] == "Claim"]
    eobs = [r for r in resources if r["resourceType"] == "ExplanationOfBenefit"]
    claim_lines = sum(len(c["item"]) for c in claims if c["use"] == "claim")
    unpriced_lines = sum(1 for c in claims for i in c["item"] if "net" not in i and "unitPrice" not in i)
    # the rule: one remittance per adjudicated line; an EOB without one gives one for the claim, paid its
    # header payment
    expected_remits = 0
    expected_paid = Decimal(0)
    for e in eobs:
        lines = [i for i in e["item"] if i.get("adjudication")]
        if lines:
            expected_remits += len(lines)
            expected_paid += sum((_paid_to_provider(i) for i in lines), Decimal(0))
        else:
            expected_remits += 1
            expected_paid += Decimal(repr(e["payment"]["amount"]["value"])).quantize(Decimal("0.01"))
    assert len(patients) == 1 and encounters and claims and eobs and unpriced_lines  # what the file holds

    results = normalize_payload(load_plugins(), path.read_bytes(), practice="corpus", origin=SYNTHEA)
    assert [r.error for r in results] == [None]
    records = results[0].records
    assert len(kind(records, "patient")) == 1
    assert len(kind(records, "encounter")) == len(encounters)
    assert {e["encounter_class"] for e in kind(records, "encounter")} <= {"AMB", "EMER", "IMP"}
    charges = kind(records, "charge")
    assert len(charges) == claim_lines
    assert sum(1 for c in charges if c.get("unpriced")) == unpriced_lines
    remits = kind(records, "remittance")
    assert len(remits) == expected_remits
    assert sum((r["paid_amount"] for r in remits), Decimal(0)) == expected_paid
    # every line payment points at a charge of the bundle, every payment at a claim of it
    assert {r["charge_source_id"] for r in remits if r.get("charge_source_id")} <= {c["source_id"] for c in charges}
    assert {r["claim_id"] for r in remits} <= {c["id"] for c in claims}
    assert {r["payer_name"] for r in remits} and None not in {r.get("payer_name") for r in remits}
    npis = {p["identifier"]["value"] for e in encounters for x in e.get("participant", [])
            if (p := x.get("individual", {})) and "identifier" in p}
    refs = {x["individual"]["reference"].rsplit("|", 1)[-1] for e in encounters for x in e.get("participant", [])
            if "reference" in x.get("individual", {})}
    assert {e["provider_source_id"] for e in kind(records, "encounter")} <= npis | refs
    # a line for an encounter is the encounter's clinician's (the claims are billed by organizations)
    clinician = {f"urn:uuid:{e['id']}": e["participant"][0]["individual"]["reference"].rsplit("|", 1)[-1]
                 for e in encounters}
    expected = {f"{c['id']}-{i['sequence']}": clinician[i["encounter"][0]["reference"]]
                for c in claims for i in c["item"] if "encounter" in i}
    assert expected and {c["source_id"]: c.get("provider_source_id") for c in charges
                         if c["source_id"] in expected} == expected


def test_a_claim_billed_by_an_organization_takes_the_provider_of_the_encounter_of_its_line() -> None:
    enc = {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"},
           "participant": [{"individual": {"reference": f"Practitioner?identifier={NPI}|1234567893"}}]}
    billed = claim(line(1, net={"value": 5}, encounter=[{"reference": "Encounter/e1"}]), line(2, net={"value": 6}),
                   provider={"reference": "Organization?identifier=https://github.com/synthetichealth/synthea|x1"})
    charges = {c["source_id"]: c for c in kind(run(bundle(enc, billed))[0], "charge")}
    assert charges["k1-1"]["provider_source_id"] == "1234567893" and charges["k1-1"]["encounter_source_id"] == "e1"
    assert "provider_source_id" not in charges["k1-2"]  # no encounter named: no provider guessed


def test_a_practitioner_created_conditionally_is_known_by_that_identifier_across_batch_entries() -> None:
    """Synthea's practitionerInformation: each Practitioner POSTed with ``ifNoneExist`` on its NPI, each role
    naming its practitioner by that NPI, every entry a message of its own: one provider per clinician."""
    doc = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"fullUrl": "urn:uuid:aaaa-1", "request": {"method": "POST", "url": "Practitioner",
                                                   "ifNoneExist": f"identifier={NPI}|1234567893"},
         "resource": practitioner("aaaa-1", "1234567893", name=[{"family": "Osler", "given": ["W"]}])},
        {"fullUrl": "urn:uuid:bbbb-2", "request": {"method": "POST", "url": "PractitionerRole"},
         "resource": {"resourceType": "PractitionerRole", "id": "bbbb-2", "specialty": [{"text": "General"}],
                      "practitioner": {"identifier": {"system": NPI, "value": "1234567893"},
                                       "display": "Dr. W Osler"}}}]}
    providers = kind(run(doc)[0], "provider")
    assert [p["source_id"] for p in providers] == ["1234567893", "1234567893"]
    assert {p["family_name"] for p in providers} == {"Osler"} and {p["npi"] for p in providers} == {"1234567893"}
    # in a transaction, a reference to its full URL finds it under the same source id
    enc = {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"},
           "participant": [{"individual": {"reference": "urn:uuid:aaaa-1"}}]}
    doc["type"] = "transaction"
    doc["entry"].append({"fullUrl": "urn:uuid:e1", "request": {"method": "POST", "url": "Encounter"}, "resource": enc})
    [e] = kind(run(doc)[0], "encounter")
    assert e["provider_source_id"] == "1234567893"
    # an ifNoneExist on an identifier the resource does not carry changes nothing
    doc["entry"][0]["request"]["ifNoneExist"] = f"identifier={NPI}|1111111112"
    assert kind(run(doc)[0], "encounter")[0]["provider_source_id"] == "aaaa-1"
