"""Real payloads, read in part and on the record: unpriced DFTs, every patient identifier, encounter class,
SIU providers from PV1 and SIU without SCH, REF referrals, and the message's tally (segments not mapped,
optional values left out, text skipped before MSH).

Expected values are read from the messages by hand (the synthetic ones below, and the named corpus files).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hub_hl7v2 import HL7v2Connector

from hub.connector import Context, Tally
from hub.errors import ParseError
from hub.model.schemas import to_json_ready, validate_record

MSH = "MSH|^~\\&|EHR|NORTHDERM|HUB|MSO|20250301093000||{type}|CTRL{n}|P|2.5.1"
PID = "PID|1||MRN1^^^NORTHDERM^MR||Sampleton^Avery||19800102|F|||1 Example Way^^Springfield^IL^62701||2175550100"
NPI = "1234567893"  # a valid NPI check digit (the CMS example)


def seg(name: str, fields: dict[int, str]) -> str:
    """A segment from its fields by number (1-based), the ones between left empty."""
    values = [""] * max(fields)
    for number, value in fields.items():
        values[number - 1] = value
    return "|".join([name, *values])


PV1 = seg("PV1", {1: "1", 2: "O", 3: "ROOM1^^^NORTHDERM", 19: "V100"})


def message(kind: str, *segments: str, n: int = 1) -> bytes:
    return "\r".join([MSH.format(type=kind, n=n), *segments]).encode()


def normalize(data: bytes, *, strict: bool = False) -> tuple[list[dict], Tally]:
    connector = HL7v2Connector()
    tally = Tally()
    context = Context(practice="p1", origin="test", strict=strict, tally=tally)
    records = []
    for envelope in connector.split(data, origin="test"):
        records.extend(validate_record(r) for r in connector.normalize(envelope, context))
    return to_json_ready(records), tally


def one(records: list[dict], kind: str) -> dict:
    found = [r for r in records if r["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} records"
    return found[0]


def kinds(records: list[dict]) -> list[str]:
    return [r["kind"] for r in records]


# ------------------------------------------------------------------ DFT: unpriced and unit price x quantity
FT1_UNPRICED = seg("FT1", {1: "1", 2: "TX1", 4: "20250301", 6: "CG", 7: "99213^^CPT", 10: "2", 19: "L98.9~I10",
                           20: f"{NPI}^Example^Jordan^^^^^^NPI^^^^NPI", 25: "99213^^CPT", 26: "25"})


def test_a_dft_charge_without_amount_keeps_codes_units_provider_and_the_patient() -> None:
    records, tally = normalize(message("DFT^P03", "EVN|P03|20250301", PID, PV1, FT1_UNPRICED,
                                       "IN1|1|AET01|AET01|AETNA PPO"))
    charge = one(records, "charge")
    assert charge["unpriced"] is True
    assert charge.get("amount") is None
    assert charge["procedure_code"] == "99213"
    assert charge["modifiers"] == ["25"]
    assert charge["units"] == 2
    assert charge["diagnosis_codes"] == ["L98.9", "I10"]
    assert charge["provider_source_id"] == NPI
    assert charge["service_date"] == "2025-03-01"
    assert charge["encounter_source_id"] == "V100"
    assert charge["payer_name"] == "AETNA PPO"
    assert one(records, "patient")["source_id"] == "MRN1"
    assert one(records, "provider")["npi"] == NPI
    assert one(records, "coverage")["payer_name"] == "AETNA PPO"
    assert not tally.invalid


def test_a_unit_price_is_multiplied_by_the_quantity() -> None:
    ft1 = "FT1|1|TX2||20250301||CG|99213^^CPT|||3||12.50&USD"
    charge = one(normalize(message("DFT^P03", PID, PV1, ft1))[0], "charge")
    assert charge["amount"] == "37.50"
    assert charge["units"] == 3
    assert "unpriced" not in charge


def test_the_extended_amount_wins_over_the_unit_price() -> None:
    ft1 = "FT1|1|TX3||20250301||CG|99213^^CPT|||3|100.00&USD|12.50&USD"
    charge = one(normalize(message("DFT^P03", PID, PV1, ft1))[0], "charge")
    assert charge["amount"] == "100.00"


def test_a_unit_price_without_quantity_counts_one_unit() -> None:
    ft1 = "FT1|1|TX4||20250301||CG|99213^^CPT||||12.50"
    charge = one(normalize(message("DFT^P03", PID, PV1, ft1))[0], "charge")
    assert (charge["amount"], charge["units"]) == ("12.50", 1)


def test_a_strict_practice_still_refuses_a_charge_without_amount() -> None:
    with pytest.raises(ParseError) as caught:
        normalize(message("DFT^P03", PID, PV1, FT1_UNPRICED), strict=True)
    assert caught.value.location == "FT1 #1-11"
    assert "strict" in caught.value.message


def test_an_unreadable_quantity_is_left_out_on_the_record() -> None:
    ft1 = "FT1|1|TX5||20250301||CG|99213^^CPT|||two|40.00"
    records, tally = normalize(message("DFT^P03", PID, PV1, ft1))
    assert one(records, "charge")["units"] == 1
    assert tally.invalid == [("FT1 #1-10", "not a whole number of units")]


# ------------------------------------------------------------------ patient identifiers
def test_pid2_pid4_and_every_pid3_repetition_are_identifiers() -> None:
    pid = ("PID|1|EXT77^^^OLDEHR^PI|MRN1^^^NORTHDERM^MR~123456789^^^^SS|ALT9^^^^PT~MRN1^^^NORTHDERM^MR|"
           "Sampleton^Avery||19800102|F")
    patient = one(normalize(message("ADT^A04", pid))[0], "patient")
    assert patient["source_id"] == "MRN1"
    assert [(i["system"], i["value"], i["type"]) for i in patient["identifiers"]] == [
        ("NORTHDERM", "MRN1", "MR"),   # PID-3, its assigning authority as system
        ("http://hl7.org/fhir/sid/us-ssn", "123456789", "SS"),  # PID-3 type SS without authority: the SSN system
        ("OLDEHR", "EXT77", "PI"),     # PID-2
        ("PT", "ALT9", "PT"),          # PID-4 (its second repetition repeats the MRN: not kept twice)
    ]


def test_a_v23_patient_named_only_in_pid2_keeps_it_as_mrn_and_identifier() -> None:
    patient = one(normalize(message("ADT^A04", "PID|1|4455||||Sampleton^Avery"))[0], "patient")
    assert patient["source_id"] == "4455"
    assert patient["identifiers"] == [{"system": None, "value": "4455", "type": None}]


def pid_with(fields: dict[int, str]) -> str:
    """A PID of MRN1 (Sampleton^Avery) with the given fields."""
    return seg("PID", {1: "1", 3: "MRN1^^^NORTHDERM^MR", 5: "Sampleton^Avery", 7: "19800102", 8: "F", **fields})


@pytest.mark.parametrize(("field", "expected"), [
    ("1 Example Way^^Springfield^IL^62701", ("1 Example Way", "62701")),  # no type: the one address
    # a business address first, the home one (XAD-7 H) second: the home one, its postal code with it
    ("9 Office Park^Suite 3^Decatur^IL^62521^USA^B~22 Home St^Apt 4^Springfield^IL^62702^USA^H",
     ("22 Home St", "62702")),
    ("10 Mail Box Rd^^Springfield^IL^62703^USA^M~22 Home St^^Springfield^IL^62704^USA^HOME", ("22 Home St", "62704")),
    ("10 Mail Box Rd^^Springfield^IL^62703^USA^M~9 Office Park^^Decatur^IL^62521^USA^B", ("10 Mail Box Rd", "62703")),
    # only a business address: no street line, the postal code of the first repetition as before
    ("9 Office Park^^Decatur^IL^62521^USA^B", (None, "62521")),
    ("&Elm Street&42^^Springfield^IL^62701", ("42 Elm Street", "62701")),  # SAD: dwelling number, street name
    ("1000&Hospital Lane^Ste. 123^Ann Arbor^MI^99999^USA^M", ("1000 Hospital Lane", "99999")),  # house number only
    ("^^Springfield^IL^62701", (None, "62701")),
])
def test_pid11_home_street_line_and_postal_code(field: str, expected: tuple[str | None, str | None]) -> None:
    patient = one(normalize(message("ADT^A04", pid_with({11: field})))[0], "patient")
    assert (patient.get("address_line"), patient.get("postal_code")) == expected


@pytest.mark.parametrize(("field", "phone", "email"), [
    ("(217) 555-0100^PRN^PH~^NET^Internet^avery.s@example.org", "(217) 555-0100", "avery.s@example.org"),
    # the e-mail repetition first: the phone is the first repetition that is no e-mail address
    ("^NET^Internet^avery.s@example.org~^PRN^PH^^1^217^5550100", "2175550100", "avery.s@example.org"),
    ("^NET^^avery.s@example.org", None, "avery.s@example.org"),        # use code NET alone
    ("^^Internet^avery.s@example.org", None, "avery.s@example.org"),   # equipment type Internet alone
    ("avery.s@example.org^NET^Internet", None, "avery.s@example.org"),  # older feeds: the address in XTN-1
    ("(217) 555-0100^^^avery.s@example.org", "(217) 555-0100", "avery.s@example.org"),  # XTN-4 without codes
    ("^PRN^PH^^1^217^5550100", "2175550100", None),
])
def test_pid13_phone_and_email(field: str, phone: str | None, email: str | None) -> None:
    records, tally = normalize(message("ADT^A04", pid_with({13: field})))
    patient = one(records, "patient")
    assert (patient.get("phone"), patient.get("email")) == (phone, email)
    assert not tally.invalid


def test_a_net_value_that_is_no_address_is_left_out_on_the_record() -> None:
    pid = pid_with({13: "^NET^Internet^avery at example~^PRN^PH^^^217^5550100"})
    records, tally = normalize(message("ADT^A04", pid))
    patient = one(records, "patient")
    assert "email" not in patient and patient["phone"] == "2175550100"
    assert tally.invalid == [("PID-13", "not an e-mail address")]


SSN = "http://hl7.org/fhir/sid/us-ssn"
MBI = "http://hl7.org/fhir/sid/us-mbi"


def test_pid19_ssn_is_an_identifier_of_the_ssn_system() -> None:
    patient = one(normalize(message("ADT^A04", pid_with({19: "123-45-6789"})))[0], "patient")
    assert patient["identifiers"] == [{"system": "NORTHDERM", "value": "MRN1", "type": "MR"},
                                      {"system": SSN, "value": "123456789", "type": "SS"}]


@pytest.mark.parametrize("pid3", ["MRN1^^^NORTHDERM^MR~123456789^^^^SS", "MRN1^^^NORTHDERM^MR~123-45-6789^^^USSSA^SS"])
def test_pid19_already_in_pid3_is_not_repeated(pid3: str) -> None:
    patient = one(normalize(message("ADT^A04", pid_with({3: pid3, 19: "123456789"})))[0], "patient")
    assert len(patient["identifiers"]) == 2
    assert [i["type"] for i in patient["identifiers"]] == ["MR", "SS"]


def test_pid19_with_another_number_than_pid3_is_added() -> None:
    pid = pid_with({3: "MRN1^^^NORTHDERM^MR~987654321^^^USSSA^SS", 19: "123 45 6789"})
    patient = one(normalize(message("ADT^A04", pid))[0], "patient")
    assert [(i["system"], i["value"]) for i in patient["identifiers"]] == [
        ("NORTHDERM", "MRN1"), ("USSSA", "987654321"), (SSN, "123456789")]


@pytest.mark.parametrize("value", ["PSSN123121234", "34-13-312", "12345678"])
def test_a_pid19_that_is_no_ssn_is_left_out_on_the_record(value: str) -> None:
    records, tally = normalize(message("ADT^A04", pid_with({19: value})))
    assert one(records, "patient")["identifiers"] == [{"system": "NORTHDERM", "value": "MRN1", "type": "MR"}]
    assert tally.invalid == [("PID-19", "not a social security number")]


@pytest.mark.parametrize(("cx", "system"), [
    ("1EG4TE5MK73^^^^MC", MBI),             # type MC (Medicare number), shaped like an MBI
    ("1EG4-TE5-MK73^^^^MC", MBI),           # as printed on the card
    ("1EG4TE5MK73^^^CMS^MB", MBI),          # assigned by CMS
    ("1EG4TE5MK73^^^&2.16.840.1.113883.4.927&ISO^MB", MBI),  # the MBI's OID as authority
    ("123456789A^^^^MC", "MC"),             # an old HICN: not an MBI, kept as before
    ("1SG4TE5MK73^^^^MC", "MC"),            # S is no MBI letter
    ("1EG4TE5MK73^^^NORTHDERM^PI", "NORTHDERM"),  # MBI-shaped, but neither MC nor CMS
])
def test_a_medicare_number_shaped_like_an_mbi_gets_the_mbi_system(cx: str, system: str) -> None:
    patient = one(normalize(message("ADT^A04", pid_with({3: f"MRN1^^^NORTHDERM^MR~{cx}"})))[0], "patient")
    assert patient["identifiers"][1]["system"] == system
    assert patient["identifiers"][1]["value"] == cx.split("^")[0]  # the value as sent


# ------------------------------------------------------------------ encounter class (PV1-2)
@pytest.mark.parametrize(("patient_class", "expected"),
                         [("O", "AMB"), ("R", "AMB"), ("I", "IMP"), ("E", "EMER"), ("P", "PRENC"), ("B", None),
                          ("U", None), ("", None)])
def test_pv1_2_patient_class_gives_the_encounter_class(patient_class: str, expected: str | None) -> None:
    pv1 = seg("PV1", {1: "1", 2: patient_class, 3: "ROOM1", 19: "V100"})
    encounter = one(normalize(message("ADT^A04", PID, pv1))[0], "encounter")
    assert encounter.get("encounter_class") == expected


# ------------------------------------------------------------------ SIU: providers from PV1, no SCH
SCH_FIELDS = {1: "A1^EHR", 2: "A1^EHR", 7: "NEW^New patient^L", 9: "30", 10: "min",
              11: "^^30^20250310090000^20250310093000", 25: "Booked"}
SCH = seg("SCH", SCH_FIELDS)


def test_an_siu_without_aip_takes_its_provider_from_pv1_7() -> None:
    pv1 = f"PV1|1|O|ROOM1||||{NPI}^Example^Jordan^^^^^^NPI^^^^NPI|2222^Referrer^Riley"
    records = normalize(message("SIU^S12", SCH, PID, pv1, "AIS|1|A|NEW^New patient^L|20250310090000"))[0]
    appointment = one(records, "appointment")
    assert appointment["provider_source_id"] == NPI
    assert appointment["provider_npi"] == NPI
    assert {r["source_id"] for r in records if r["kind"] == "provider"} == {NPI}


def test_an_siu_without_aip_nor_attending_takes_the_next_pv1_provider() -> None:
    pv1 = "PV1|1|O|ROOM1|||||2222^Referrer^Riley"
    appointment = one(normalize(message("SIU^S12", SCH, PID, pv1))[0], "appointment")
    assert appointment["provider_source_id"] == "2222"


def test_aip_wins_over_pv1() -> None:
    pv1 = f"PV1|1|O|ROOM1||||{NPI}^Example^Jordan"
    aip = "AIP|1|A|3333^Scheduled^Casey|D||20250310090000"
    appointment = one(normalize(message("SIU^S12", SCH, PID, pv1, aip))[0], "appointment")
    assert appointment["provider_source_id"] == "3333"


def test_an_siu_without_sch_is_read_from_its_resource_segments() -> None:
    pv1 = seg("PV1", {1: "1", 2: "O", 19: "V555"})
    ais = "AIS|1|A|CONSULT^Consult^L|20250310090000|0|min|45|min"
    records, tally = normalize(message("SIU^S12", PID, pv1, ais, "AIL|1|A|ROOM2", "AIP|1|A|3333^Scheduled^Casey"))
    appointment = one(records, "appointment")
    assert appointment["source_id"] == "V555"
    assert appointment["start"] == "2025-03-10T09:00:00+00:00"
    assert appointment["duration_min"] == 45
    assert appointment["visit_type"] == "CONSULT"
    assert appointment["provider_source_id"] == "3333"
    assert appointment["location_source_id"] == "ROOM2"
    assert appointment["patient_source_id"] == "MRN1"
    assert any("no SCH segment" in note and "PV1-19" in note for note in tally.notes)


def test_an_siu_without_sch_nor_visit_number_is_keyed_by_its_control_id() -> None:
    records, tally = normalize(message("SIU^S12", PID, "AIS|1|A|CONSULT|20250310090000", n=42))
    assert one(records, "appointment")["source_id"] == "CTRL42"
    assert any("MSH-10" in note for note in tally.notes)


def test_an_siu_without_sch_nor_resource_segment_is_refused_naming_sch() -> None:
    with pytest.raises(ParseError) as caught:
        normalize(message("SIU^S12", PID))
    assert caught.value.location == "SCH"
    assert "no SCH segment" in caught.value.message


def test_sch_26_links_the_appointment_to_its_referral() -> None:
    sch = seg("SCH", {**SCH_FIELDS, 26: "R17^EHR"})
    appointment = one(normalize(message("SIU^S12", sch, PID, "AIS|1|A|NEW|20250310090000"))[0], "appointment")
    assert appointment["referral_source_id"] == "R17"


# ------------------------------------------------------------------ REF referrals
RF1 = "RF1|A^Accepted^HL70283|R^Routine^HL70280|DERM^^L||O^Outpatient^HL70284|R17^EHR|20250214|||"
PRD_RP = seg("PRD", {1: "RP^Referring Provider^HL70286", 2: "Referrer^Riley^Q^^^MD", 7: f"{NPI}^NPI"})


def test_a_ref_i12_gives_the_referral_its_patient_and_referring_provider() -> None:
    records = normalize(message("REF^I12^REF_I12", RF1, "PRD|RT^Referred to|Target^Tess", PRD_RP, PID))[0]
    referral = one(records, "referral")
    assert referral["source_id"] == "R17"
    assert referral["status"] == "active"
    assert referral["specialty"] == "DERM"
    assert referral["received_on"] == "2025-02-14"
    assert referral["referring_provider"] == "Referrer Riley Q MD"
    assert referral["patient_source_id"] == "MRN1"
    provider = one(records, "provider")
    assert (provider["source_id"], provider["npi"], provider["family_name"]) == (NPI, NPI, "Referrer")
    assert one(records, "patient")["source_id"] == "MRN1"


def test_a_ref_received_date_falls_back_to_the_process_date_then_the_message() -> None:
    rf1 = "RF1|P|||||R18||||"
    referral = one(normalize(message("REF^I12", rf1, PID))[0], "referral")
    assert referral["received_on"] == "2025-03-01"  # MSH-7
    assert referral["status"] == "draft"
    assert "referring_provider" not in referral
    rf1 = "RF1|A|||||R18|bad||20250220|"
    referral_records, tally = normalize(message("REF^I12", rf1, PID))
    assert one(referral_records, "referral")["received_on"] == "2025-02-20"
    assert tally.invalid == [("RF1-7", "not a date")]


def test_a_ref_i14_revokes_the_referral() -> None:
    assert one(normalize(message("REF^I14", RF1, PID))[0], "referral")["status"] == "revoked"


def test_a_ref_without_rf1_or_id_is_refused_naming_the_field() -> None:
    with pytest.raises(ParseError) as caught:
        normalize(message("REF^I12", PID))
    assert caught.value.location == "RF1"
    with pytest.raises(ParseError) as caught:
        normalize(message("REF^I12", "RF1|A|R|DERM", PID))
    assert caught.value.location == "RF1-6"


# ------------------------------------------------------------------ the tally
def test_segments_the_mapping_does_not_read_are_counted_by_id() -> None:
    records, tally = normalize(message("ADT^A04", "EVN|A04|20250301", PID, "NK1|1|Sampleton^Quinn", PV1,
                                       "OBX|1|ST|X||a", "OBX|2|ST|X||b", "AL1|1||PEN", "ZPI|1|local",
                                       "IN1|1|AET01|AET01|AETNA PPO"))
    assert kinds(records) == ["patient", "coverage", "location", "encounter"]
    assert tally.not_mapped == {"NK1": 1, "OBX": 2, "AL1": 1, "ZPI": 1}
    assert tally.invalid == []


def test_dg1_is_counted_only_when_no_charge_takes_its_diagnoses() -> None:
    dg1 = "DG1|1|I10|E11.9"
    used = "FT1|1|T1||20250301||CG|99213|||1|40.00"
    _, tally = normalize(message("DFT^P03", PID, PV1, used, dg1))
    assert "DG1" not in tally.not_mapped
    unused = "FT1|1|T1||20250301||CG|99213|||1|40.00||||||||I10"
    _, tally = normalize(message("DFT^P03", PID, PV1, unused, dg1, "PR1|1|CPT|99213"))
    assert tally.not_mapped == {"DG1": 1, "PR1": 1}


def test_unreadable_optional_values_are_left_out_with_their_field() -> None:
    pid = "PID|1||MRN1^^^NORTHDERM^MR||Sampleton^Avery||1980-13-45|F|||||someone@example.org"
    pv1 = seg("PV1", {1: "1", 2: "O", 3: "ROOM1", 19: "V100", 44: "notadate"})
    records, tally = normalize(message("ADT^A04", pid, pv1))
    patient = one(records, "patient")
    assert "birth_date" not in patient and "phone" not in patient
    assert patient["family_name"] == "Sampleton"
    assert "start" not in one(records, "encounter")
    assert tally.invalid == [("PID-7", "not a date"), ("PID-13", "not a phone number"),
                             ("PV1-44", "not a date-time")]


def test_a_readable_phone_is_kept() -> None:
    pid = "PID|1||MRN1^^^NORTHDERM^MR||Sampleton^Avery||19800102|F|||||(217) 555-0100^PRN^PH"
    records, tally = normalize(message("ADT^A04", pid))
    assert one(records, "patient")["phone"] == "(217) 555-0100"
    assert not tally.invalid


def test_text_before_the_first_msh_is_a_note_of_the_first_message() -> None:
    data = b"# exported 2025-03-01\r\n" + message("ADT^A04", PID)
    records, tally = normalize(data)
    assert kinds(records) == ["patient"]
    assert tally.notes == ["skipped 21 bytes (1 lines) before the first MSH segment (a comment or vendor prefix)"]


# ------------------------------------------------------------------ the named corpus files
def real(corpus: Path, name: str) -> bytes:
    return (corpus / "real" / "hl7v2" / name).read_bytes()


@pytest.mark.parametrize("name", ["lfh__Hl7DFTMessageTest_L31.hl7", "lfh__Hl7FinancialInsuranceTest_L47.hl7",
                                  "lfh__Hl7FinancialInsuranceTest_L554.hl7", "lfh__Hl7FinancialInsuranceTest_L711.hl7",
                                  "lfh__Hl7FinancialInsuranceTest_L947.hl7"])
def test_lfh_dfts_without_amount_give_the_patient_and_an_unpriced_charge(corpus: Path, name: str) -> None:
    records, _ = normalize(real(corpus, name))
    patient = one(records, "patient")
    assert patient["family_name"] == "DOE" and patient["given_name"] == "JANE" and patient["sex"] == "female"
    charge = one(records, "charge")
    assert charge["unpriced"] is True and charge.get("amount") is None
    assert charge["procedure_code"] == "FAKE"
    assert charge["service_date"] == "2020-12-31"
    assert charge["units"] == 1
    assert charge["patient_source_id"] == patient["source_id"]
    assert one(records, "coverage")["patient_source_id"] == patient["source_id"]


def test_lfh_l31_counts_its_order_and_observation_segments(corpus: Path) -> None:
    records, tally = normalize(real(corpus, "lfh__Hl7DFTMessageTest_L31.hl7"))
    assert one(records, "patient")["identifiers"] == [{"system": "XYZ", "value": "MR1", "type": "MR"}]
    assert one(records, "coverage")["payer_name"] == "Large Blue Organization"
    assert tally.not_mapped == {"ORC": 1, "OBR": 1, "NTE": 2, "OBX": 1}


def test_mieweb_dft_gives_two_unpriced_charges_with_codes_and_providers(corpus: Path) -> None:
    records, tally = normalize(real(corpus, "nodehl7__mieweb_dft-example.hl7"))
    charges = [r for r in records if r["kind"] == "charge"]
    assert [(c["procedure_code"], c["provider_source_id"], c["service_date"]) for c in charges] == [
        ("73630", "1", "2008-05-28"), ("76775", "20", "2010-02-12")]
    assert all(c["unpriced"] is True and c.get("amount") is None for c in charges)
    assert charges[0]["modifiers"] == ["RT", "GA"]
    assert charges[0]["diagnosis_codes"] == ["V76.12", "959.7"]  # FT1-19 empty: the DG1 codes
    assert charges[1]["diagnosis_codes"] == ["440.0", "441.4"]  # FT1-19
    patient = [r for r in records if r["kind"] == "patient"][0]
    assert patient["source_id"] == "10476"
    assert {(i["value"], i["type"]) for i in patient["identifiers"]} == {("10476", "MR"), ("999999999", "SS")}
    stewart = [r for r in records if r["kind"] == "provider" and r["source_id"] == "20"]
    assert (stewart[0]["family_name"], stewart[0]["given_name"]) == ("Stewart", "Patrick")
    # PR1 in both messages; DG1 of the second only (the first message's charge took them)
    assert tally.not_mapped == {"PR1": 2, "DG1": 2}


def test_dcm4che_siu_without_sch_is_read_from_ais_ail_aip(corpus: Path) -> None:
    records, tally = normalize(real(corpus, "dcm4che__SIU^S12-NewAppointmentBooking.hl7"))
    appointment = one(records, "appointment")
    assert appointment["source_id"] == "AdmissionIDFromVisitNo"  # PV1-19
    assert appointment["start"] == "2020-10-23T08:30:00+00:00"  # AIS-4 (no offset: the practice's zone, UTC)
    assert appointment["duration_min"] == 60  # AIS-7 3600, AIS-8 s
    assert appointment["provider_source_id"] == "12345"  # AIP-3
    assert appointment["location_source_id"] == "UCI"  # AIL-3
    assert appointment["patient_source_id"] == "PID_1"
    assert appointment["status"] == "booked"
    assert tally.not_mapped == {"NTE": 4}


def test_bad_phone_siu_with_only_a_pid_is_refused_naming_sch(corpus: Path) -> None:
    with pytest.raises(ParseError) as caught:
        normalize(real(corpus, "nodehl7__misc_bad-phone-example.hl7"))
    assert caught.value.location == "SCH"
