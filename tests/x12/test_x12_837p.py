"""837P professional claims → charges (one per SV1), the claim's patient and rendering providers; expected
values read off the sample ``connectors/hub_x12/samples/claims_837p.x12`` by hand."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hub_x12 import X12Connector

from hub.connector import Context
from hub.errors import ParseError
from hub.model.schemas import validate_record

from .build import GS, ISA, ST

SAMPLE = Path(__file__).resolve().parents[2] / "connectors" / "hub_x12" / "samples" / "claims_837p.x12"


def normalize(data: bytes) -> list[dict[str, Any]]:
    connector = X12Connector()
    return [validate_record(r) for e in connector.split(data) for r in connector.normalize(e, Context(practice="p"))]


def test_charges_per_service_line_with_every_field() -> None:
    records = normalize(SAMPLE.read_bytes())
    charges = {r["source_id"]: r for r in records if r["kind"] == "charge"}
    assert set(charges) == {"LINE5001", "PCN500:2", "PCN600:1"}  # REF*6R when sent, else CLM-01:LX-01
    first = charges["LINE5001"]
    assert (first["claim_id"], first["patient_source_id"], first["procedure_code"], first["modifiers"]) == (
        "PCN500", "MRN500", "99213", ["25"])
    assert (first["amount"], first["units"], first["service_date"].isoformat()) == (Decimal("150"), 1, "2025-03-01")
    assert first["diagnosis_codes"] == ["L989", "I10"]  # pointers 1 and 3 of HI: L989, D485, I10
    assert (first["rendering_npi"], first["billing_npi"], first["provider_source_id"]) == (
        "1999999976", "1999999984", "1999999976")  # the claim's rendering provider (2310B)
    assert (first["payer_name"], first["payer_id"]) == ("SYNTHETIC HEALTH PLAN", "SHP01")
    assert first["posted_on"].isoformat() == "2025-03-05"
    second = charges["PCN500:2"]
    assert (second["procedure_code"], second["units"], second["amount"], second["diagnosis_codes"]) == (
        "11102", 2, Decimal("100"), ["D485"])
    assert second["rendering_npi"] == "1999999968"  # the line's own rendering provider (2420A)
    third = charges["PCN600:1"]
    assert third["patient_source_id"] == "MEM20002/CASEY"  # a dependent without REF*EA
    assert (third["rendering_npi"], third["provider_source_id"]) == (None, "1999999984")  # the billing NPI
    assert third["service_date"].isoformat() == "2025-03-02"  # the first date of the RD8 range
    assert (third["payer_name"], third["diagnosis_codes"]) == ("MEDICARE SYNTHETIC", ["J069"])

    patients = {r["source_id"]: r for r in records if r["kind"] == "patient"}
    assert (patients["MRN500"]["family_name"], patients["MRN500"]["birth_date"].isoformat(),
            patients["MRN500"]["sex"], patients["MRN500"]["postal_code"]) == ("SAMPLETON", "1980-01-15", "female",
                                                                            "62704")
    assert (patients["MEM20002/CASEY"]["given_name"], patients["MEM20002/CASEY"]["sex"]) == ("CASEY", "female")
    assert {r["source_id"] for r in records if r["kind"] == "provider"} == {"1999999976", "1999999968"}


def claim(*lines: str) -> bytes:
    body = ["BHT*0019*00*B1*20250305*1015*CH", "HL*1**20*1", "NM1*85*2*CLINIC*****XX*1999999984",
            "HL*2*1*22*0", "SBR*P*18*******CI", "NM1*IL*1*SAMPLETON*AVERY****MI*M1", "NM1*PR*2*PLAN*****PI*P1",
            "CLM*PCN1*100***11:B:1*Y*A*Y*Y", "HI*ABK:L989", *lines]
    return ISA([GS("1", [ST("0001", body, set_id="837", version="005010X222A1")], code="HC",
                   version="005010X222A1")]).bytes()


def test_a_pointer_to_no_diagnosis_is_refused_naming_sv1_07() -> None:
    with pytest.raises(ParseError) as caught:
        normalize(claim("LX*1", "SV1*HC:99213*100*UN*1***2", "DTP*472*D8*20250301"))
    assert caught.value.location == "SV1-07, transaction segment 12"


def test_a_line_without_a_service_date_is_refused() -> None:
    with pytest.raises(ParseError) as caught:
        normalize(claim("LX*1", "SV1*HC:99213*100*UN*1***1"))
    assert "no service date" in str(caught.value)
