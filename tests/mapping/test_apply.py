"""Codes are mapped beside their source values; an unmapped code keeps its record with empty mapped fields."""

from __future__ import annotations

from pathlib import Path

from hub.mapping import load_mapping
from hub.model.schemas import validate_record

EXAMPLE = Path(__file__).resolve().parents[2] / "mappings" / "example-practice.yaml"
MAPPING = load_mapping(EXAMPLE.read_text())


def appointment(**fields: object) -> dict:
    return {"kind": "appointment", "practice": "p", "source_id": "A1", "start": "2025-03-04T09:30:00-06:00",
            "status": "booked", **fields}


def test_visit_type_location_provider_and_cancel_reason_are_mapped() -> None:
    out = MAPPING.apply(appointment(visit_type="NP", location_source_id="LP", provider_source_id="DRALV",
                                    cancel_reason="SNOW"))
    assert (out["service_line"], out["visit_category"]) == ("medical_dermatology", "new")
    assert out["mso_location"] == "chi-lincoln-park"
    assert out["provider_npi"] == "1526018159"
    assert out["cancel_category"] == "weather"
    assert out["visit_type"] == "NP" and out["cancel_reason"] == "SNOW"  # the source codes stay
    validate_record(out)


def test_codes_match_ignoring_case_and_spaces() -> None:
    out = MAPPING.apply(appointment(visit_type=" np ", cancel_reason="pt  cancel"))
    assert out["service_line"] == "medical_dermatology" and out["cancel_category"] == "patient"


def test_unmapped_codes_keep_the_record_with_empty_mapped_fields() -> None:
    out = MAPPING.apply(appointment(visit_type="ZZ", location_source_id="NOWHERE"))
    assert out["visit_type"] == "ZZ" and "service_line" not in out and "mso_location" not in out
    validate_record(out)


def test_payers_exact_then_pattern_with_financial_class_from_the_vocabulary() -> None:
    charge = {"kind": "charge", "practice": "p", "source_id": "C1", "service_date": "2025-03-04", "amount": "10"}
    exact = MAPPING.apply({**charge, "payer_name": "AETNA PPO"})
    assert (exact["payer"], exact["financial_class"]) == ("aetna", "commercial")
    pattern = MAPPING.apply({**charge, "payer_name": "Blue Cross of Illinois"})
    assert (pattern["payer"], pattern["financial_class"]) == ("bcbs", "commercial")
    medicaid = MAPPING.apply({**charge, "payer_name": "ILLINOIS MEDICAID"})
    assert medicaid["financial_class"] == "medicaid"
    remittance = MAPPING.apply({"kind": "remittance", "practice": "p", "source_id": "R1", "payer_name": "SELF PAY"})
    assert remittance["payer"] == "self_pay" and "financial_class" not in remittance  # not a remittance field
    validate_record(remittance)


def test_only_fields_of_the_kind_are_set() -> None:
    out = MAPPING.apply({"kind": "charge", "practice": "p", "source_id": "C1", "service_date": "2025-03-04",
                         "amount": "10", "visit_type": "NP", "location_source_id": "LP", "provider_source_id": "DRALV"})
    assert out["service_line"] == "medical_dermatology"
    assert "visit_category" not in out and "mso_location" not in out and "provider_npi" not in out
    validate_record(out)
    provider = MAPPING.apply({"kind": "provider", "practice": "p", "source_id": "DRALV"})
    assert provider["npi"] == "1526018159"


def test_defaults_fill_what_the_practice_never_sends() -> None:
    mapping = load_mapping("version: 1\ndefaults:\n  appointment: {location_source_id: LP}\n"
                           "code_maps:\n  location: {LP: chi-lincoln-park}\n")
    out = mapping.apply(appointment())
    assert out["location_source_id"] == "LP" and out["mso_location"] == "chi-lincoln-park"
    kept = mapping.apply(appointment(location_source_id="OB"))
    assert kept["location_source_id"] == "OB" and "mso_location" not in kept


def test_the_mapping_timezone_is_the_practice_zone_not_a_connector_override() -> None:
    # the core reads times without an offset in the practice's zone; connector sections keep only their own
    assert "timezone" not in MAPPING.connector_config("csv")
    assert MAPPING.practice_zone(None) == "America/Chicago"  # the mapping's zone, for a practice without one
    assert MAPPING.practice_zone("America/Denver") == "America/Denver"  # the registered zone wins
    assert MAPPING.connector_config("hl7v2")["overrides"]["visit_type"] == "AIS.3.1"
