"""Facts read by hand from real-world corpus files, one or more files of each source project of
../shared/corpus/PROVENANCE.md, checked against the canonical records ``hub normalize`` yields.

Every expected value below was read from the file itself (the segment and field, or the JSON element, is
named beside it), never from the hub's output. The files are run once (``tests/corpus/corpus_files.py``).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.corpus.corpus_files import Outcome, outcome

UTC = dt.UTC


def run(corpus: Path, rel: str) -> Outcome:
    assert (corpus / rel).is_file(), f"{rel} is not in the corpus"
    return outcome(rel)


def only(records: list[dict[str, Any]], kind: str, source_id: str) -> dict[str, Any]:
    found = [r for r in records if r["kind"] == kind and r["source_id"] == source_id]
    assert found, f"no {kind} {source_id} among {sorted({(r['kind'], r['source_id']) for r in records})}"
    return found[0]


def identifier_values(patient: dict[str, Any]) -> set[str]:
    return {i["value"] for i in patient.get("identifiers") or ()}


# ------------------------------------------------------------------ HAPI (hapifhir/hapi-hl7v2)
def test_hapi_adt_a01_patient_its_pid2_identifier_and_visit(corpus: Path) -> None:
    out = run(corpus, "real/hl7v2/hapi__ADT_A01.txt")
    assert not out.errors
    # PID-3 2216506^ (no type), PID-5 Duck^Donald, PID-7 19720227, PID-8 M, PID-2 9999999999^^
    patient = only(out.records, "patient", "2216506")
    assert (patient["family_name"], patient["given_name"]) == ("Duck", "Donald")
    assert patient["birth_date"] == dt.date(1972, 2, 27) and patient["sex"] == "male"
    assert {"2216506", "9999999999"} <= identifier_values(patient)  # PID-2 kept as an identifier
    # PV1-19 visit number 211004554, PV1-44 admit 200105231927 (no offset: UTC)
    encounter = only(out.records, "encounter", "211004554")
    assert encounter["patient_source_id"] == "2216506"
    assert encounter["start"] == dt.datetime(2001, 5, 23, 19, 27, tzinfo=UTC)


# ------------------------------------------------------------------ nHapi (nHapiNET/nHapi)
def test_nhapi_oml_batch_keeps_its_five_good_messages(corpus: Path) -> None:
    out = run(corpus, "real/hl7v2/nhapi__OML_O21_messages.txt")
    assert len(out.results) == 7
    # messages 5 and 7 (HIS|ASE) have an empty MSH-10; the five others are Adam Everyman's
    assert [r.error is not None for r in out.results] == [False, False, False, False, True, False, True]
    assert all((r.error.location or "").endswith("MSH-10") for r in out.results if r.error is not None)
    patients = out.kind("patient")
    assert len(patients) == 5 and {p["source_id"] for p in patients} == {"12345"}
    # PID-3 12345^5^M10^Memphis_Hosp^PI, PID-5 EVERYMAN^ADAM^^JR, PID-7 19800101, PID-8 M
    patient = patients[0]
    assert (patient["family_name"], patient["given_name"]) == ("EVERYMAN", "ADAM")
    assert patient["birth_date"] == dt.date(1980, 1, 1) and patient["sex"] == "male"
    assert {"system": "Memphis_Hosp", "value": "12345"}.items() <= patient["identifiers"][0].items()


# ------------------------------------------------------------------ NextGen Connect (Mirth)
def test_mirth_adt_a04_after_a_vendor_prefix(corpus: Path) -> None:
    out = run(corpus, "real/hl7v2/mirth__hl7.txt")  # "[SOM]" before MSH
    assert not out.errors
    # PID-3 999965423^^^AccMgr^MR^1, PID-2 800866^^^AccMgr^PN, PID-5 TEST^PATIENT LB, PID-7 19570219, PID-8 F
    patient = only(out.records, "patient", "999965423")
    assert patient["birth_date"] == dt.date(1957, 2, 19) and patient["sex"] == "female"
    assert patient["family_name"] == "TEST"
    assert {"999965423", "800866"} <= identifier_values(patient)
    # PV1-2 E (emergency), PV1-7 1281^MARKHAM^JOSEPH, PV1-19 6635095, PV1-44 20060302121344
    encounter = only(out.records, "encounter", "6635095")
    assert encounter["encounter_class"] == "EMER"
    assert encounter["provider_source_id"] == "1281"
    assert encounter["start"] == dt.datetime(2006, 3, 2, 12, 13, 44, tzinfo=UTC)
    provider = only(out.records, "provider", "1281")
    assert (provider["family_name"], provider["given_name"]) == ("MARKHAM", "JOSEPH")
    # IN1 1: MEDICAID (IN1-4), policy AG34234P (IN1-36); IN1 2: SELFPAY
    coverages = sorted(out.kind("coverage"), key=lambda c: c["rank"])
    assert [(c["rank"], c["payer_name"]) for c in coverages] == [(1, "MEDICAID"), (2, "SELFPAY")]
    assert coverages[0]["member_id"] == "AG34234P"
    # the skipped prefix is said, by its size, on the record and on stderr
    assert any("5 bytes" in note and "before the first MSH" in note for note in out.tally.notes)
    assert "before the first MSH" in out.stderr


# ------------------------------------------------------------------ python-hl7
def test_python_hl7_oru_keeps_the_patient_without_its_unreadable_birth_date(corpus: Path) -> None:
    out = run(corpus, "real/hl7v2/pyhl7__samples.py_sample_hl7.hl7")
    assert not out.errors
    # PID-3 555-44-4444, PID-5 EVERYWOMAN^EVE^E, PID-8 F; PID-7 is "196203520" (nine digits: no date)
    patient = only(out.records, "patient", "555-44-4444")
    assert (patient["family_name"], patient["given_name"], patient["sex"]) == ("EVERYWOMAN", "EVE", "female")
    assert patient.get("birth_date") is None
    # the unreadable optional field is left out on the record, by its place, without its value
    invalid = out.tally.invalid
    assert [path for path, _ in invalid if path.startswith("PID-7")], out.tally.as_dict()
    assert all("196203520" not in reason for _, reason in invalid)


# ------------------------------------------------------------------ dcm4che
def test_dcm4che_adt_a31_patient(corpus: Path) -> None:
    out = run(corpus, "real/hl7v2/dcm4che__ADT^A31-UpdatePersonInfo.hl7")
    assert not out.errors
    # PID-3 PID_1^^^ADT1, PID-5 Smith^Lucy^Mark, PID-7 20141014, PID-8 F
    patient = only(out.records, "patient", "PID_1")
    assert (patient["family_name"], patient["given_name"]) == ("Smith", "Lucy")
    assert patient["birth_date"] == dt.date(2014, 10, 14) and patient["sex"] == "female"
    assert {"system": "ADT1", "value": "PID_1"}.items() <= patient["identifiers"][0].items()


# ------------------------------------------------------------------ LinuxForHealth hl7v2-fhir-converter
def test_linuxforhealth_dft_without_amount_is_an_unpriced_charge(corpus: Path) -> None:
    out = run(corpus, "real/hl7v2/lfh__Hl7DFTMessageTest_L31.hl7")
    assert not out.errors
    # PID-3 MR1^^^XYZ^MR, PID-5 DOE^JANE, PID-8 F
    patient = only(out.records, "patient", "MR1")
    assert (patient["family_name"], patient["given_name"], patient["sex"]) == ("DOE", "JANE", "female")
    # FT1-4 20201231145045, FT1-6 CG, FT1-7 FAKE; FT1-10/11/12 empty: no price
    (charge,) = out.kind("charge")
    assert charge["patient_source_id"] == "MR1"
    assert charge["service_date"] == dt.date(2020, 12, 31)
    assert charge["procedure_code"] == "FAKE"
    assert charge.get("amount") is None and charge["unpriced"] is True
    # IN1-4 Large Blue Organization, IN1-36 MEMBER36
    (coverage,) = out.kind("coverage")
    assert (coverage["payer_name"], coverage["member_id"]) == ("Large Blue Organization", "MEMBER36")


# ------------------------------------------------------------------ HL7 v2-to-FHIR (HL7/v2-to-fhir)
def test_v2_to_fhir_mdm_patient_and_inpatient_visit(corpus: Path) -> None:
    out = run(corpus, "real/hl7v2/v2tofhir__Message.hl7_MDM_T02.txt")
    assert not out.errors
    # PID-3 000322330^^^REDDING HOSPITAL&...^MR, PID-5 JOHN^DOE, PID-7 19941201, PID-8 M
    patient = only(out.records, "patient", "000322330")
    assert (patient["family_name"], patient["given_name"]) == ("JOHN", "DOE")
    assert patient["birth_date"] == dt.date(1994, 12, 1) and patient["sex"] == "male"
    # PV1-2 I, PV1-7 1123456771^MITCHELL^HILA^K^^^^^NPI^^^^NPI, PV1-19 1234567891, PV1-44 20230729081300
    encounter = only(out.records, "encounter", "1234567891")
    assert encounter["encounter_class"] == "IMP"
    assert encounter["start"] == dt.datetime(2023, 7, 29, 8, 13, tzinfo=UTC)
    provider = only(out.records, "provider", encounter["provider_source_id"])
    assert provider["npi"] == "1123456771" and provider["family_name"] == "MITCHELL"


# ------------------------------------------------------------------ node-hl7-complete
def test_node_hl7_siu_appointment_start_duration_status_and_provider(corpus: Path) -> None:
    out = run(corpus, "real/hl7v2/nodehl7__corepoint-health_siu-example.hl7")
    assert not out.errors
    # SCH-1 00331839401, SCH-9/10 20 MIN, SCH-11.4 200803061000, SCH-25 ARRIVED, AIP-3 PBN^LISAPORTER,
    # PID-3 489671
    appointment = only(out.records, "appointment", "00331839401")
    assert appointment["start"] == dt.datetime(2008, 3, 6, 10, 0, tzinfo=UTC)
    assert appointment["duration_min"] == 20
    assert appointment["status"] == "arrived"
    assert appointment["provider_source_id"] == "PBN"
    assert appointment["patient_source_id"] == "489671"


def test_node_hl7_dft_lines_without_price_keep_codes_units_and_provider(corpus: Path) -> None:
    out = run(corpus, "real/hl7v2/nodehl7__mieweb_dft-example.hl7")
    assert not out.errors and len(out.results) == 2
    # message 1 FT1: FT1-4 20080528114700, FT1-10 1, FT1-11/12 empty, FT1-20 1^mie^mie, FT1-25 73630, FT1-26 RT~GA
    # message 2 FT1: FT1-4 20100212000000, FT1-10 1, FT1-19 440.0~441.4, FT1-20 20^Stewart^Patrick, FT1-25 76775
    charges = {c["procedure_code"]: c for c in out.kind("charge")}
    assert set(charges) == {"73630", "76775"}
    first, second = charges["73630"], charges["76775"]
    assert first["service_date"] == dt.date(2008, 5, 28) and second["service_date"] == dt.date(2010, 2, 12)
    assert first["units"] == second["units"] == 1
    assert first["modifiers"] == ["RT", "GA"]
    assert (first["provider_source_id"], second["provider_source_id"]) == ("1", "20")
    assert second["diagnosis_codes"] == ["440.0", "441.4"]
    assert all(c.get("amount") is None and c["unpriced"] is True for c in charges.values())
    # PID-3 10476^^^MR&...^MR~999999999^^^^SS, PID-7 20100201, PID-8 M: every PID-3 repetition kept
    patient = only(out.records, "patient", "10476")
    assert patient["birth_date"] == dt.date(2010, 2, 1) and patient["sex"] == "male"
    assert {"10476", "999999999"} <= identifier_values(patient)


# ------------------------------------------------------------------ FHIR R4 examples package (google/fhir)
def test_r4_example_encounter_start_end_status_and_class(corpus: Path) -> None:
    out = run(corpus, "real/fhir/gfhir__Encounter-home.json")
    assert not out.errors
    # id home, status finished, class HH, period 2015-01-17T16:00:00+10:00 .. 16:30:00+10:00,
    # subject Patient/example, participant Practitioner/example
    (encounter,) = out.kind("encounter")
    assert encounter["source_id"] == "home" and encounter["status"] == "finished"
    plus10 = dt.timezone(dt.timedelta(hours=10))
    assert encounter["start"] == dt.datetime(2015, 1, 17, 16, 0, tzinfo=plus10)
    assert encounter["end"] == dt.datetime(2015, 1, 17, 16, 30, tzinfo=plus10)
    assert encounter["encounter_class"] == "HH"
    assert (encounter["patient_source_id"], encounter["provider_source_id"]) == ("example", "example")


def test_r4_example_claim_lines_are_charges(corpus: Path) -> None:
    out = run(corpus, "real/fhir/gfhir__Claim-100151.json")
    assert not out.errors
    # use claim, patient Patient/1, items 1200 net 135.57, 21211 net 105.00, 27211 net 1100.00, 2014-08-16
    charges = {c["procedure_code"]: c for c in out.kind("charge")}
    assert {code: c["amount"] for code, c in charges.items()} == {
        "1200": Decimal("135.57"), "21211": Decimal("105.00"), "27211": Decimal("1100.00")}
    assert {c["service_date"] for c in charges.values()} == {dt.date(2014, 8, 16)}
    assert {c["patient_source_id"] for c in charges.values()} == {"1"}


def test_r4_example_preauthorization_claim_is_not_charges_and_is_said(corpus: Path) -> None:
    out = run(corpus, "real/fhir/gfhir__Claim-100153.json")
    # use preauthorization: items ORTHPLAN 9000, 21211 105, 27211 1100 are asked for, not billed
    assert not out.errors and not out.kind("charge")
    summary = out.tally.summary()
    assert "Claim" in summary and "preauthorization" in summary
    assert "no record (" in out.stderr and "preauthorization" in out.stderr


def test_r4_example_claim_response_pays_its_items_and_added_items(corpus: Path) -> None:
    out = run(corpus, "real/fhir/gfhir__ClaimResponse-R3503.json")
    assert not out.errors
    # item benefits 0, 84, 600; addItem benefits 72 (code 1101), 28.47 (2141), 270 (expense):
    # 1054.47 in all, the total's benefit; payment date 2014-08-31
    lines = out.kind("remittance")
    paid = sorted(r["paid_amount"] for r in lines)
    assert {Decimal("72.00"), Decimal("28.47"), Decimal("270.00")} <= set(paid)  # addItem lines read
    assert sum(paid) == Decimal("1054.47")
    assert {r["paid_on"] for r in lines} == {dt.date(2014, 8, 31)}


def test_r4_example_claim_response_by_business_identifier_links_to_the_claims_charges(
        corpus: Path, runtime: Any) -> None:
    # ClaimResponse R3503 names its claim by identifier http://happyvalley.com/claim|12346, which is the
    # identifier of Claim 100151 (items 1, 2, 3); its item lines answer items 1, 2 and 3 (itemSequence).
    # Each file alone cannot know the other: the charges carry their claim's number and line, the
    # remittances the claim number and line they answer, and the store links them as they are stored.
    charges = run(corpus, "real/fhir/gfhir__Claim-100151.json").kind("charge")
    assert {(c["source_id"], c["claim_id"], c["claim_line"]) for c in charges} == {
        ("100151-1", "12346", 1), ("100151-2", "12346", 2), ("100151-3", "12346", 3)}
    lines = run(corpus, "real/fhir/gfhir__ClaimResponse-R3503.json").kind("remittance")
    assert lines and {r["claim_id"] for r in lines} == {"12346"}

    import sqlalchemy as sa

    from hub.model.tables import RECORD_TABLES
    from hub.pipeline.intake import receive
    from hub.store import writer
    from hub.store.practices import add_practice

    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "happy", "Happy Valley")
    for rel in ("real/fhir/gfhir__Claim-100151.json", "real/fhir/gfhir__ClaimResponse-R3503.json"):
        (receipt,) = receive(runtime, "happy", (corpus / rel).read_bytes(), origin=rel)
        assert receipt.status == "accepted", receipt.outcome.error
    remits = RECORD_TABLES["remittance"]
    with runtime.engine.connect() as conn:
        linked = dict(conn.execute(sa.select(remits.c.claim_line, remits.c.charge_source_id)
                                   .where(remits.c.practice == "happy", remits.c.claim_line.is_not(None))).all())
    assert linked and all(linked[n] == f"100151-{n}" for n in linked), linked


def test_r4_example_proposed_appointment_without_start_is_not_refused_and_is_said(corpus: Path) -> None:
    out = run(corpus, "real/fhir/gfhir__Appointment-examplereq.json")
    # status proposed, no start (FHIR allows it: requestedPeriod 2016-06-02 .. 2016-06-09 instead)
    assert not out.errors, [str(e) for e in out.errors]
    assert not out.kind("appointment")
    assert "Appointment" in out.tally.summary()
    assert out.exit_code == 0 and "no record (" in out.stderr and "Appointment" in out.stderr


# ------------------------------------------------------------------ Synthea (google/fhir-data-pipes)
BOB = "real/fhir/fdp__Bob965_Keeling57_3f6fd0bb-6cd3-eb3f-4401-cd38ace25f2b.json"
SYNTHEA_PATIENTS = (BOB, "real/fhir/fdp__Cecelia952_Romaguera67_f1731e33-dc55-4ee8-72d7-cece2e49bedd.json",
                    "real/fhir/fdp__Jeremiah751_Dach178_9785afad-19cc-02f6-de65-b2de2618c9ac.json",
                    "real/fhir/fdp__Levi940_Gusikowski974_b71e39bd-d33f-0b50-a8e5-ed4142d306fe.json")


@pytest.mark.parametrize("rel", SYNTHEA_PATIENTS, ids=lambda f: f.split("__")[1].split("_")[0])
def test_every_synthea_patient_bundle_loads_whole(corpus: Path, rel: str) -> None:
    """Pushed as a file: the patient, every encounter, a charge per claim line and the payments of every EOB,
    with no error (counts read from the JSON here, not from the connector)."""
    import json

    out = run(corpus, rel)
    assert not out.errors, [str(e) for e in out.errors]
    entries = [e["resource"] for e in json.loads((corpus / rel).read_text())["entry"]]
    of_type = lambda t: [r for r in entries if r["resourceType"] == t]  # noqa: E731
    assert len(out.kind("patient")) == 1
    assert len(out.kind("encounter")) == len(of_type("Encounter")) > 0
    assert len(out.kind("charge")) == sum(len(c.get("item") or ()) for c in of_type("Claim"))
    paid_claims = {r["claim_id"] for r in out.kind("remittance")}
    assert len(paid_claims) == len(of_type("ExplanationOfBenefit"))  # each EOB pays its claim


def test_synthea_bundle_loads_its_patient_and_encounters(corpus: Path) -> None:
    out = run(corpus, BOB)
    assert not out.errors, [str(e) for e in out.errors]
    # Patient 3f6fd0bb-...: Keeling57 Bob965, male, born 1991-07-08
    (patient,) = out.kind("patient")
    assert patient["source_id"] == "3f6fd0bb-6cd3-eb3f-4401-cd38ace25f2b"
    assert (patient["family_name"], patient["given_name"]) == ("Keeling57", "Bob965")
    assert patient["birth_date"] == dt.date(1991, 7, 8) and patient["sex"] == "male"
    # 32 Encounter entries, all finished; class AMB but one IMP (e245a687-..., 2019-07-27T01:39:26Z)
    encounters = out.kind("encounter")
    assert len(encounters) == 32
    assert {e["status"] for e in encounters} == {"finished"}
    assert {e["patient_source_id"] for e in encounters} == {patient["source_id"]}
    assert sorted(e["encounter_class"] for e in encounters) == ["AMB"] * 31 + ["IMP"]
    inpatient = only(encounters, "encounter", "e245a687-a270-f522-560b-5a1596ec5543")
    assert inpatient["start"] == dt.datetime(2019, 7, 27, 1, 39, 26, tzinfo=UTC)


def test_synthea_claim_lines_without_net_are_unpriced_charges(corpus: Path) -> None:
    out = run(corpus, BOB)
    assert not out.errors, [str(e) for e in out.errors]
    # 32 Claims (use claim) with 78 items: 46 with net (6,463.92 in all), 32 without net or unitPrice
    # (the encounter's own line: 26 × 410620009, 5 × 162673000, 1 × 1597AAAA...)
    charges = out.kind("charge")
    assert len(charges) == 78
    unpriced = [c for c in charges if c.get("unpriced")]
    assert len(unpriced) == 32 and all(c.get("amount") is None for c in unpriced)
    assert sum(c["amount"] for c in charges if not c.get("unpriced")) == Decimal("6463.92")
    assert {c["patient_source_id"] for c in charges} == {"3f6fd0bb-6cd3-eb3f-4401-cd38ace25f2b"}


def test_synthea_eob_payments_come_from_the_blue_button_line_provider_payment(corpus: Path) -> None:
    out = run(corpus, BOB)
    assert not out.errors, [str(e) for e in out.errors]
    # 32 ExplanationOfBenefits, 78 items; 46 items carry the CMS Blue Button adjudication
    # line_prvdr_pmt_amt ("Line Provider Payment Amount"): 5,171.32 in all, each rounded to the cent
    # (Synthea writes them as floats, e.g. 112.41600000000001 for the Hep B line of the first EOB)
    remittances = out.kind("remittance")
    assert sum(r["paid_amount"] or 0 for r in remittances) == Decimal("5171.32")
    # insurer.display of the EOBs (no Organization resource: the name, not an id)
    assert {r["payer_name"] for r in remittances} == {
        "Aetna", "Anthem", "Blue Cross Blue Shield", "Cigna Health", "Humana", "UnitedHealthcare"}


def test_synthea_practitioner_roles_join_their_practitioners(corpus: Path) -> None:
    out = run(corpus, "real/fhir/fdp__practitionerInformation1633536936158.json")
    assert not out.errors
    # 1,191 Practitioners (each its own us-npi identifier) and 1,191 PractitionerRoles naming their
    # practitioner by that NPI: one provider per clinician, not a second nameless one per role
    providers = out.kind("provider")
    assert len({p["source_id"] for p in providers}) == 1191
    named = {p["source_id"] for p in providers if p.get("family_name")}
    assert named == {p["source_id"] for p in providers}  # every provider has its practitioner's name


# ------------------------------------------------------------------ the earlier corpus: microsoft/FHIR-Converter
def test_fhir_converter_dft_lines_amount_units_and_rendering_npi(corpus: Path) -> None:
    out = run(corpus, "hl7v2/msfc__DFT_P03__1.hl7")
    assert not out.errors
    # FT1 1: FT1-2 12345, FT1-4 20191122, FT1-10 2, FT1-11 100&USD (FT1-12 50&USD each), FT1-20 NPI 9941339108,
    #        FT1-25 71045, FT1-26 26, FT1-19 29857009~68235000
    # FT1 2: FT1-10 1, FT1-11 120&USD, FT1-25 99011
    charges = {c["procedure_code"]: c for c in out.kind("charge")}
    assert set(charges) == {"71045", "99011"}
    xray, visit = charges["71045"], charges["99011"]
    assert (xray["units"], xray["amount"], xray["modifiers"]) == (2, Decimal("100.00"), ["26"])
    assert xray["source_id"] == "12345" and xray["service_date"] == dt.date(2019, 11, 22)
    assert xray["diagnosis_codes"] == ["29857009", "68235000"]
    assert only(out.records, "provider", xray["provider_source_id"])["npi"] == "9941339108"
    assert (visit["units"], visit["amount"]) == (1, Decimal("120.00"))
    assert not any(c.get("unpriced") for c in charges.values())


# ------------------------------------------------------------------ the earlier corpus: Efferent-Health/HL7-V2
def test_efferent_adt_keeps_pid3_and_pid4_and_the_outpatient_visit(corpus: Path) -> None:
    out = run(corpus, "hl7v2/efferent__ADT_O01__1.hl7")  # CRLF ends, a blank line between segments
    assert not out.errors
    # PID-3 0493575^^^2^ID 1, PID-4 454721, PID-5 DOE^JOHN, PID-7 19480203, PID-8 M
    (patient,) = out.kind("patient")
    assert {"0493575", "454721"} <= identifier_values(patient)
    assert (patient["family_name"], patient["given_name"]) == ("DOE", "JOHN")
    assert patient["birth_date"] == dt.date(1948, 2, 3) and patient["sex"] == "male"
    # PV1-2 O, PV1-7 277^MYLASTNAME^BONNIE, PV1-19 2688684, PV1-44 199912271408
    encounter = only(out.records, "encounter", "2688684")
    assert encounter["encounter_class"] == "AMB" and encounter["provider_source_id"] == "277"
    assert encounter["start"] == dt.datetime(1999, 12, 27, 14, 8, tzinfo=UTC)


# ------------------------------------------------------------------ the earlier corpus: microsoft/fhir-server
def test_fhir_server_example_appointment(corpus: Path) -> None:
    out = run(corpus, "fhir/msfhirsrv__Appointment__1.json")
    assert not out.errors
    # status booked, start 2013-12-10T09:00:00Z, end 11:00:00Z, participants Patient/example,
    # Practitioner/example, Location/1
    appointment = only(out.records, "appointment", "example")
    assert appointment["status"] == "booked"
    assert appointment["start"] == dt.datetime(2013, 12, 10, 9, 0, tzinfo=UTC)
    assert appointment["duration_min"] == 120
    assert (appointment["patient_source_id"], appointment["provider_source_id"],
            appointment["location_source_id"]) == ("example", "example", "1")


# ------------------------------------------------------------------ the earlier corpus: CARIN Blue Button test kit
def test_carin_bb_inpatient_eob_payment_and_payer(corpus: Path) -> None:
    out = run(corpus, "fhir/carinkit__ExplanationOfBenefit__1.json")
    assert not out.errors
    # insurer display "UPMC Health Plan"; total: submitted 7147.20, eligible 1542.01, copay 120, benefit 1393.57
    (remittance,) = out.kind("remittance")
    assert remittance["payer_name"] == "UPMC Health Plan"
    assert remittance["paid_amount"] == Decimal("1393.57")
    assert remittance["denied"] is False


# ------------------------------------------------------------------ the earlier corpus: pyx12 (X12 835)
def test_pyx12_835_denied_claim_lines(corpus: Path) -> None:
    out = run(corpus, "x12/pyx12__835__1.x12")
    if out.refused is not None and "no installed connector" in out.refused.message:
        pytest.skip("no installed connector recognises X12 yet")
    assert not out.errors, [str(e) for e in out.errors]
    # CLP 2005555A, CLP-02 4 (denied), CLP-03 915.39, CLP-04 0, CLP-07 4276512332; TRN-02 000000000;
    # SVC HC:T1005 500.04 / 127.8 / 287.55, each paid 0; CAS CO*16, OA*A7, OA*A7 for the whole line; LQ*HE N14
    lines = out.kind("remittance")
    assert len(lines) == 3
    assert {r["claim_id"] for r in lines} == {"2005555A"}
    assert {r["claim_status"] for r in lines} == {"4"} and all(r["denied"] for r in lines)
    assert {r["payer_claim_id"] for r in lines} == {"4276512332"}
    assert {r["trace_number"] for r in lines} == {"000000000"}
    assert {r["procedure_code"] for r in lines} == {"T1005"}
    assert sorted(r["charged_amount"] for r in lines) == [Decimal("127.80"), Decimal("287.55"), Decimal("500.04")]
    assert all(not r["paid_amount"] for r in lines)
    groups = sorted((a["group"], a["reason"], Decimal(str(a["amount"]))) for r in lines for a in r["adjustments"])
    assert groups == [("CO", "16", Decimal("500.04")), ("OA", "A7", Decimal("127.80")),
                      ("OA", "A7", Decimal("287.55"))]
    assert all(r["remark_codes"] == ["N14"] for r in lines)
