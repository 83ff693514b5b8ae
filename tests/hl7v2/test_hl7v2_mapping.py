"""Mapping to the common model: the shared corpus, golden files, and each message family's rules.

Golden files (tests/hl7v2/golden/*.json) are regenerated with:

    HUB_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/hl7v2/test_hl7v2_mapping.py -q
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hub_hl7v2 import HL7v2Connector

from hub.connector import Context
from hub.errors import HubError
from hub.model.schemas import to_json_ready, validate_record

HERE = Path(__file__).resolve().parent
SAMPLES = HERE.parents[1] / "connectors" / "hub_hl7v2" / "samples"
GOLDEN = HERE / "golden"
CORPUS_GOLDEN = ["msfc__ADT_A01__1.hl7", "msfc__ADT_A40__2.hl7", "msfc__SIU_S12__1.hl7", "msfc__SIU_S15__1.hl7",
                 "msfc__SIU_S26__1.hl7", "msfc__DFT_P03__1.hl7", "lfh__ADT_A01__1.hl7", "efferent__ADT_O01__1.hl7"]


def records_of(data: bytes, *, config: dict | None = None) -> list[dict]:
    connector = HL7v2Connector()
    context = Context(practice="p1", config=config or {}, origin="test")
    out = []
    for envelope in connector.split(data, origin="test"):
        out.extend(validate_record(r) for r in connector.normalize(envelope, context))
    return to_json_ready(out)


def by_kind(records: list[dict], kind: str) -> list[dict]:
    return [r for r in records if r["kind"] == kind]


def test_every_corpus_message_normalizes_or_is_refused_with_a_reason(corpus: Path) -> None:
    files = sorted((corpus / "hl7v2").glob("*.hl7"))
    assert files
    read = 0
    for path in files:
        try:
            records = records_of(path.read_bytes())
        except HubError as exc:
            assert str(exc).strip() and exc.location, f"{path.name}: a refusal needs a reason and a place"
            continue
        assert records, f"{path.name} yielded nothing and no error"
        read += 1
    assert read >= len(files) * 0.9


def _golden_check(name: str, records: list[dict]) -> None:
    path = GOLDEN / (Path(name).stem + ".json")
    text = json.dumps(records, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    if os.environ.get("HUB_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"no golden file {path.name}: regenerate with HUB_UPDATE_GOLDEN=1"
    expected = json.loads(path.read_text(encoding="utf-8"))
    assert len(records) == len(expected), name
    for got, want in zip(records, expected, strict=True):
        for key in sorted(set(got) | set(want)):
            assert got.get(key) == want.get(key), f"{name}: {got['kind']} {got['source_id']} field {key}"


@pytest.mark.parametrize("name", CORPUS_GOLDEN)
def test_corpus_golden(corpus: Path, name: str) -> None:
    _golden_check(name, records_of((corpus / "hl7v2" / name).read_bytes()))


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.glob("*.hl7")))
def test_sample_golden(name: str) -> None:
    _golden_check("sample__" + name, records_of((SAMPLES / name).read_bytes()))


def test_adt_patient_identifiers_coverage_ranks_encounter_and_npi() -> None:
    records = records_of((SAMPLES / "adt_a04.hl7").read_bytes())
    patient = by_kind(records, "patient")[0]
    assert patient["source_id"] == "MRN100234"
    assert {(i["system"], i["type"]) for i in patient["identifiers"]} == {("NORTHDERM", "MR"), ("USSSA", "SS")}
    assert patient["birth_date"] == "1979-05-12" and patient["sex"] == "female"
    ranks = {c["payer_name"]: c["rank"] for c in by_kind(records, "coverage")}
    assert ranks == {"AETNA PPO": 1, "SECONDARY MUTUAL": 2}
    encounter = by_kind(records, "encounter")[0]
    assert encounter["source_id"] == "V778812" and encounter["status"] == "arrived"
    assert encounter["start"] == "2025-03-04T09:30:00-05:00"
    assert {p["source_id"]: p.get("npi") for p in by_kind(records, "provider")}["1234567893"] == "1234567893"
    assert by_kind(records, "location")[0]["source_id"] == "NDMAIN"


def test_merge_keeps_the_merge_and_the_surviving_patient() -> None:
    records = records_of((SAMPLES / "adt_a40.hl7").read_bytes())
    merge = by_kind(records, "patient_merge")[0]
    assert (merge["prior_source_id"], merge["surviving_source_id"]) == ("MRN100999", "MRN100234")
    assert merge["merged_at"] == "2025-03-05T10:15:00-05:00"


@pytest.mark.parametrize(("name", "status"), [("siu_s12.hl7", "booked"), ("siu_s15.hl7", "cancelled"),
                                              ("siu_s26.hl7", "noshow")])
def test_appointment_status_from_trigger(name: str, status: str) -> None:
    appointment = by_kind(records_of((SAMPLES / name).read_bytes()), "appointment")[0]
    assert appointment["status"] == status
    assert appointment["start"].startswith("2025-03-10T09")


def test_cancellation_keeps_reason_and_time() -> None:
    appointment = by_kind(records_of((SAMPLES / "siu_s15.hl7").read_bytes()), "appointment")[0]
    assert appointment["cancel_reason"] == "PTREQ"
    assert appointment["cancelled_at"] == "2025-03-09T17:00:00-05:00"


def test_s17_is_entered_in_error(corpus: Path) -> None:
    records = records_of((corpus / "hl7v2" / "msfc__SIU_S17__1.hl7").read_bytes())
    assert by_kind(records, "appointment")[0]["status"] == "entered-in-error"


def test_dft_charges_and_payment() -> None:
    records = records_of((SAMPLES / "dft_p03.hl7").read_bytes())
    charges = {c["source_id"]: c for c in by_kind(records, "charge")}
    assert charges["TX9001"]["procedure_code"] == "11102"
    assert charges["TX9001"]["modifiers"] == ["59", "XS"]
    assert charges["TX9001"]["amount"] == "145.00"
    assert charges["TX9001"]["diagnosis_codes"] == ["L98.9", "D48.5"]
    assert charges["TX9001"]["service_date"] == "2025-03-10" and charges["TX9001"]["posted_on"] == "2025-03-11"
    assert charges["TX9002"]["provider_source_id"] == "1234567893"
    remittance = by_kind(records, "remittance")[0]
    assert remittance["paid_amount"] == "40.00" and remittance["source_id"] == "TX9003"


def test_batch_with_quirks_v23_latin1_custom_separators() -> None:
    records = records_of((SAMPLES / "batch_v23_latin1.hl7").read_bytes())
    patient = by_kind(records, "patient")[0]
    assert patient["family_name"] == "Müller-Exampl!e" and patient["given_name"] == "Renée"
    assert "birth_date" not in patient  # 30 February is no date
    # sent without an offset and read by the hub for a practice without a zone: UTC
    assert by_kind(records, "appointment")[0]["start"] == "2008-04-15T08:30:00+00:00"


def test_times_without_offset_use_the_practice_timezone() -> None:
    records = records_of((SAMPLES / "batch_v23_latin1.hl7").read_bytes(), config={"timezone": "America/Chicago"})
    assert by_kind(records, "appointment")[0]["start"] == "2008-04-15T08:30:00-05:00"


def test_other_message_types_yield_the_patient_or_a_reason(corpus: Path) -> None:
    records = records_of((corpus / "hl7v2" / "msfc__VXU_V04__1.hl7").read_bytes())
    assert by_kind(records, "patient")
    with pytest.raises(HubError, match="MSH-9|not read"):
        records_of(b"MSH|^~\\&|A|B|C|D|2025||MFN^M02|X1|P|2.5\rMFE|A\r")


def test_a_person_aig_stands_in_for_a_missing_aip() -> None:
    records = records_of(b"MSH|^~\\&|A|B|C|D|2025||SIU^S12|X1|P|2.5\rSCH||AP1\rPID|1||P1^^^A^MR\r"
                         b"AIS|1||NP|20250301090000\rAIG|1||77^Jones|PROV\rAIG|2||ROOM9^Laser|EQ\r")
    assert by_kind(records, "appointment")[0]["provider_source_id"] == "77"
    assert [p["source_id"] for p in by_kind(records, "provider")] == ["77"]


def test_rendered_patients_keep_their_street_line_phone_and_email() -> None:
    from hub.connector import RenderOptions
    from tests.demo.test_render import RECORDS

    extra = {"address_line": "22 Home St", "phone": "(217) 555-0100", "email": "blake@example.org"}
    records = [{**r, **extra} if r["kind"] == "patient" else r for r in RECORDS]
    connector = HL7v2Connector()
    files = connector.render(records, options=RenderOptions(practice="p", timezone="America/Chicago"))
    read = [r for f in files for r in records_of(f.data) if r["kind"] == "patient"]
    assert read and all((r["address_line"], r["postal_code"], r["phone"], r["email"]) ==
                        ("22 Home St", "60601", "(217) 555-0100", "blake@example.org") for r in read)
    # a patient without them is written as before: PID-11 the postal code alone, PID-11 the last field
    plain = connector.render(RECORDS, options=RenderOptions(practice="p", timezone="America/Chicago"))
    pids = [line for f in plain for line in f.data.decode().split("\r") if line.startswith("PID|")]
    assert pids and all(line.endswith("|^^^^60601") for line in pids)
