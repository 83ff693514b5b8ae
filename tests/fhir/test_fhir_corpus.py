"""Every public FHIR file in ../shared/corpus/fhir normalizes or is refused with a clear reason.

Golden files (tests/fhir/golden/<corpus file>) hold the records of a chosen set.
Regenerate them after a deliberate mapping change with:

    HUB_FHIR_REGOLD=1 .venv/bin/python -m pytest tests/fhir/test_fhir_corpus.py -q
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from hub.model import to_json_ready
from hub.pipeline.normalize import normalize_payload
from hub.plugins import load_plugins

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_SET = ("msfhirsrv__Appointment__1.json", "msfhirsrv__Bundle-transaction__1.json",
              "msfhirsrv__Claim__1.json", "msfhirsrv__ClaimResponse__1.json", "msfhirsrv__ChargeItem__1.json",
              "msfhirsrv__ExplanationOfBenefit__1.json", "msfhirsrv__Coverage__2.json", "msfhirsrv__Slot__1.json",
              "msfhirsrv__Encounter__2.json", "msfhirsrv__Patient__2.json", "carinkit__Bundle-searchset__2.json",
              "carinkit__Coverage__1.json", "msfhirsrv__Patient__1.json")
# the value golden files hold for an event time the hub gave (the arrival: no lastUpdated, no timestamp)
ARRIVAL = "(arrival)"
# files refused whole, with the words their reason must contain (the files taken in partly, with what
# they leave out, are in test_partial_acceptance.py)
REFUSED = {
    "msfhirsrv__Bundle-transaction__4.json": "unsupported resource type Observation",
    "msfhirsrv__Account__1.json": "unsupported resource type Account",
    "msfhirsrv__CoverageEligibilityResponse__1.json": "unsupported resource type CoverageEligibilityResponse",
    "msfhirsrv__HealthcareService__1.json": "unsupported resource type HealthcareService",
    "msfhirsrv__Invoice__1.json": "unsupported resource type Invoice",
}
# read only for references: they normalize to no record of their own
RECORDLESS = {"carinkit__Organization__1.json", "msfhirsrv__Organization__1.json", "msfhirsrv__Schedule__1.json",
              "msfhirsrv__ServiceRequest__1.json"}


@pytest.fixture(scope="module")
def plugins():  # type: ignore[no-untyped-def]
    return load_plugins()


def corpus_files() -> list[str]:
    folder = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "fhir"
    return sorted(p.name for p in folder.glob("*.json")) if folder.is_dir() else ["(corpus missing)"]


@pytest.mark.parametrize("name", corpus_files())
def test_corpus_file_normalizes_or_is_refused_with_a_reason(name: str, corpus: Path, plugins) -> None:  # type: ignore[no-untyped-def]
    path = corpus / "fhir" / name
    before = dt.datetime.now(dt.UTC)
    results = normalize_payload(plugins, path.read_bytes(), practice="corpus", origin=name)
    after = dt.datetime.now(dt.UTC)
    assert results, name
    errors = [r.error for r in results if r.error is not None]
    records = [rec for r in results for rec in r.records]
    for error in errors:
        text = str(error)
        assert text.startswith(name) and len(text) > len(name) + 10, text
        assert "Traceback" not in text
    if name in REFUSED:
        assert errors and len(results) == 1, f"{name} should be refused whole"
        assert REFUSED[name] in str(errors[0]), str(errors[0])
    elif name.startswith("msfc__Bundle-batch__") or name == "msfhirsrv__Bundle-batch__1.json":
        # a batch answers per entry: header, provenance and device entries are refused, the rest map
        assert records, name
        assert any("unsupported resource type" in str(e) for e in errors), name
    elif name in RECORDLESS:
        assert not errors and not records, name
    else:
        assert not errors, [str(e) for e in errors]
        assert records, name
    if name in GOLDEN_SET:
        check_golden(name, [{**r, "event_time": ARRIVAL} if before <= r["event_time"] <= after else r
                            for r in records])


def check_golden(name: str, records: list[dict]) -> None:
    actual = to_json_ready(records)
    golden = GOLDEN / name
    if os.environ.get("HUB_FHIR_REGOLD") == "1":
        golden.write_text(json.dumps(actual, indent=1, sort_keys=True) + "\n")
    assert golden.is_file(), f"no golden file for {name}: run with HUB_FHIR_REGOLD=1"
    assert actual == json.loads(golden.read_text()), f"{name} differs from its golden file"
