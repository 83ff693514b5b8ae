"""``hub fhir pull`` of real payloads: an EOB's payer Organization reached through its coverage
(``_include:iterate``, R4 has no ExplanationOfBenefit:insurer), and a Synthea patient's resources,
loaded into the test server, pulled type by type in small pages."""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from pathlib import Path
from typing import Any

import orjson
import pytest
from hub_fhir.pull import INCLUDES, ITERATED, STEPS, FhirClient, auth_from, per_resource, search_url

from hub.runtime import Runtime
from hub.store.canonical import count_records, fetch_records
from hub.store.engine import writer
from hub.store.messages import list_messages
from hub.store.practices import add_practice
from tests.fhir.fhir_pull import pull
from tests.fhir.fhir_test_server import R4_REFERENCE_PARAMS, bundle_resources, refusal, running

TOKEN = {"token": "test-token", "page_size": 3}
START = dt.datetime(2025, 5, 1, 9, 0, tzinfo=dt.UTC)
# a Synthea patient's transaction (google/fhir-data-pipes sample data): 1 patient, 32 encounters,
# 32 claims, 32 EOBs among 240 entries
SYNTHEA = "real/fhir/fdp__Bob965_Keeling57_3f6fd0bb-6cd3-eb3f-4401-cd38ace25f2b.json"
# every Synthea patient bundle of the corpus (google/fhir-data-pipes), named: the corpus may grow
SYNTHEA_PATIENTS = (SYNTHEA, "real/fhir/fdp__Cecelia952_Romaguera67_f1731e33-dc55-4ee8-72d7-cece2e49bedd.json",
                    "real/fhir/fdp__Jeremiah751_Dach178_9785afad-19cc-02f6-de65-b2de2618c9ac.json",
                    "real/fhir/fdp__Levi940_Gusikowski974_b71e39bd-d33f-0b50-a8e5-ed4142d306fe.json")


@pytest.fixture
def hub(tmp_path: Path) -> Runtime:
    runtime = Runtime.create(database_url=f"sqlite:///{tmp_path / 'pull.db'}", dispatcher="inline")
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "north", "North Synthetic Clinic")
    return runtime


def quiet_client() -> FhirClient:
    return FhirClient(auth=auth_from(TOKEN), backoff=0.01, sleep=lambda seconds: None)


def stamped(resource: dict[str, Any], minute: int) -> dict[str, Any]:
    return {**resource, "meta": {"versionId": "1", "lastUpdated": (START + dt.timedelta(minutes=minute)).isoformat()}}


def test_the_eob_payer_chain_and_every_include_are_r4() -> None:
    for rtype, chain in ITERATED.items():
        first, *then = chain
        target, _, param = first.partition(":")
        assert target == rtype and param in R4_REFERENCE_PARAMS[rtype], first
        for include in then:  # each step names a reference parameter of the type it starts from
            target, _, param = include.partition(":")
            assert param in R4_REFERENCE_PARAMS[target], include
    assert "insurer" not in R4_REFERENCE_PARAMS["ExplanationOfBenefit"]  # why the chain is needed
    assert INCLUDES["ClaimResponse"] == "ClaimResponse:insurer"  # R4 has this one
    url = search_url("https://fhir.example/r4", "ExplanationOfBenefit", None, 20)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["_include"] == ["ExplanationOfBenefit:coverage"]
    assert query["_include:iterate"] == ["Coverage:payor"]
    assert refusal("ExplanationOfBenefit", query) is None
    assert refusal("ExplanationOfBenefit", {"_include:iterate": ["Coverage:insurer"]})  # Coverage has no insurer
    assert STEPS["ExplanationOfBenefit"] == {"Coverage"}


def test_an_eob_message_holds_its_payer_reached_through_its_coverage_not_the_coverage() -> None:
    page = {"resourceType": "Bundle", "type": "searchset", "entry": [
        {"resource": {"resourceType": "ExplanationOfBenefit", "id": "e1", "insurer": {"reference": "Organization/o1"},
                      "insurance": [{"coverage": {"reference": "Coverage/c1"}}]}},
        {"resource": {"resourceType": "ExplanationOfBenefit", "id": "e2", "insurer": {"display": "Elsewhere"},
                      "insurance": [{"coverage": {"reference": "Coverage/c2"}}]}},
        {"resource": {"resourceType": "Coverage", "id": "c1", "payor": [{"reference": "Organization/o1"}]},
         "search": {"mode": "include"}},
        {"resource": {"resourceType": "Coverage", "id": "c2", "payor": [{"reference": "Organization/o2"}]},
         "search": {"mode": "include"}},
        {"resource": {"resourceType": "Organization", "id": "o1"}, "search": {"mode": "include"}},
        {"resource": {"resourceType": "Organization", "id": "o2"}, "search": {"mode": "include"}}]}
    payloads, _ = per_resource(page, "ExplanationOfBenefit")
    held = [[(e["resource"]["resourceType"], e["resource"]["id"]) for e in orjson.loads(p)["entry"]]
            for p in payloads]
    # e2 refers to o2 only through its coverage: the Organization comes along, the Coverage does not
    assert held == [[("ExplanationOfBenefit", "e1"), ("Organization", "o1")],
                    [("ExplanationOfBenefit", "e2"), ("Organization", "o2")]]


def payer_resources() -> list[dict[str, Any]]:
    patient = {"resourceType": "Patient", "id": "p1", "gender": "unknown"}
    payer = {"resourceType": "Organization", "id": "pay1", "name": "Synthetic Mutual"}
    coverage = {"resourceType": "Coverage", "id": "cov1", "status": "active",
                "beneficiary": {"reference": "Patient/p1"}, "payor": [{"reference": "Organization/pay1"}]}
    eob = {"resourceType": "ExplanationOfBenefit", "id": "eob1", "status": "active", "use": "claim",
           "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
           "patient": {"reference": "Patient/p1"}, "created": "2025-04-30",
           "insurer": {"reference": "Organization/pay1"}, "provider": {"reference": "Organization/prov1"},
           "outcome": "complete",
           "insurance": [{"focal": True, "coverage": {"reference": "Coverage/cov1"}}],
           "payment": {"amount": {"value": 80.0, "currency": "USD"}}}
    response = {"resourceType": "ClaimResponse", "id": "cr1", "status": "active", "use": "claim",
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type",
                                     "code": "professional"}]},
                "patient": {"reference": "Patient/p1"}, "created": "2025-04-30", "outcome": "complete",
                "insurer": {"reference": "Organization/pay1"},
                "payment": {"type": {"text": "complete"}, "amount": {"value": 55.0, "currency": "USD"}}}
    return [stamped(r, n) for n, r in enumerate([patient, payer, coverage, eob, response])]


def test_pulled_eobs_and_claim_responses_name_their_payer(hub: Runtime) -> None:
    with running(payer_resources()) as server:
        reports = pull(hub, "north", server.base, config=TOKEN, types=["ExplanationOfBenefit", "ClaimResponse"],
                       client=quiet_client())
        assert [(r.resources, r.accepted, r.error) for r in reports] == [(1, 1, 0), (1, 1, 0)]
        sent = [urllib.parse.parse_qs(urllib.parse.urlsplit(r).query) for r in server.requests]
        assert sent[0]["_include:iterate"] == ["Coverage:payor"]
    with hub.engine.connect() as conn:
        remits = fetch_records(conn, "remittance", "north")
        assert {r["source_id"]: r["payer_name"] for r in remits} == {"eob1": "Synthetic Mutual",
                                                                    "cr1": "Synthetic Mutual"}
        assert count_records(conn, "north").get("coverage", 0) == 0  # the Coverage was only the way to the payer


@pytest.mark.parametrize("bundle_file", SYNTHEA_PATIENTS, ids=lambda f: f.split("__")[1].split("_")[0])
def test_a_synthea_patient_pulled_in_small_pages_stores_every_resource(hub: Runtime, corpus: Path,
                                                                      bundle_file: str) -> None:
    path = corpus / bundle_file
    if not path.is_file():
        pytest.skip(f"{bundle_file} is not in the corpus")
    # the facts, read from the file by hand: the resources of each pulled type, claim lines, EOB claims
    entries = [e["resource"] for e in json.loads(path.read_text())["entry"]]
    of_type = {t: [r for r in entries if r["resourceType"] == t]
               for t in ("Patient", "Encounter", "Claim", "ExplanationOfBenefit")}
    claim_lines = sum(len(c.get("item") or ()) for c in of_type["Claim"])
    unpriced = sum(1 for c in of_type["Claim"] for i in c.get("item") or () if "net" not in i and "unitPrice" not in i)
    eob_claims = {e["claim"]["reference"].removeprefix("urn:uuid:") for e in of_type["ExplanationOfBenefit"]}
    assert len(of_type["Patient"]) == 1 and len(of_type["Encounter"]) == len(of_type["Claim"]) > 0  # a claim a visit
    if bundle_file == SYNTHEA:
        assert (len(of_type["Encounter"]), len(of_type["Claim"])) == (32, 32)
        assert unpriced > 0  # the lines without net that once refused every claim

    with running(bundle_resources(path)) as server:
        reports = {r.resource_type: r for r in pull(hub, "north", server.base, config={**TOKEN, "page_size": 7},
                                                     types=list(of_type), client=quiet_client())}
    for rtype, resources in of_type.items():
        report = reports[rtype]
        assert (report.resources, report.accepted, report.duplicate, report.error) == (len(resources),) * 2 + (0, 0), \
            rtype
        assert report.pages == -(-len(resources) // 7), rtype
    with hub.engine.connect() as conn:
        counts = count_records(conn, "north")
        charges = fetch_records(conn, "charge", "north")
        remits = fetch_records(conn, "remittance", "north")
        assert list_messages(conn, practice="north", status="error") == []
    assert (counts["patient"], counts["encounter"], counts["charge"]) == (1, len(of_type["Encounter"]), claim_lines)
    assert sum(1 for c in charges if c["unpriced"]) == unpriced
    assert {r["claim_id"] for r in remits} == eob_claims  # every EOB gave its remittance, linked to its claim


def test_a_page_that_is_an_operation_outcome_says_what_the_server_said(hub: Runtime) -> None:
    from hub_fhir.pull import FhirPoller, PullError

    class Answering(FhirClient):
        def get(self, url: str) -> bytes:
            return orjson.dumps({"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "too-costly", "diagnostics": "search too broad"}]})

    poller = FhirPoller("https://fhir.example/r4", TOKEN, client=Answering())
    with pytest.raises(PullError) as failed:
        list(poller.poll("Patient", None))
    assert str(failed.value) == ("the FHIR server sent something other than a Bundle from "
                                 "https://fhir.example/r4/Patient (OperationOutcome: too-costly: search too broad)")
