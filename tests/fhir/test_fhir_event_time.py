"""Event time of FHIR records: the resource's meta.lastUpdated, else the Bundle's timestamp, else none."""

from __future__ import annotations

from typing import Any

import orjson
from hub_fhir import FhirConnector

from hub.connector import Context


def normalize(doc: dict[str, Any], **config: Any) -> list[dict[str, Any]]:
    connector = FhirConnector()
    return [r for env in connector.split(orjson.dumps(doc))
            for r in connector.normalize(env, Context(practice="p", config=config, origin="t.json"))]


def patient(pid: str, updated: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Patient", "id": pid, "gender": "female"}
    if updated:
        res["meta"] = {"lastUpdated": updated}
    return res


def bundle(*resources: dict[str, Any], kind: str = "collection", timestamp: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"resourceType": "Bundle", "type": kind, "entry": [{"resource": r} for r in resources]}
    if timestamp:
        doc["timestamp"] = timestamp
    return doc


def times(records: list[dict[str, Any]]) -> dict[str, str | None]:
    return {r["source_id"]: r.get("event_time") for r in records}


def test_last_updated_wins_over_the_bundle_timestamp() -> None:
    doc = bundle(patient("p1", "2025-03-01T09:15:00.120-05:00"), patient("p2"),
                 timestamp="2025-03-02T12:00:00Z")
    assert times(normalize(doc)) == {"p1": "2025-03-01T09:15:00.120-05:00", "p2": "2025-03-02T12:00:00Z"}


def test_without_either_there_is_no_event_time() -> None:
    assert times(normalize(bundle(patient("p1")))) == {"p1": None}
    assert times(normalize(patient("p1"))) == {"p1": None}
    assert times(normalize(patient("p1", "2024-12-31T23:59:59+01:00"))) == {"p1": "2024-12-31T23:59:59+01:00"}


def test_each_entry_of_a_batch_keeps_the_batch_timestamp() -> None:
    doc = bundle(patient("p1"), patient("p2", "2025-01-05T08:00:00+00:00"), kind="batch",
                 timestamp="2025-03-02T12:00:00+02:00")
    assert times(normalize(doc)) == {"p1": "2025-03-02T12:00:00+02:00", "p2": "2025-01-05T08:00:00+00:00"}


def test_every_record_of_a_resource_carries_its_time() -> None:
    claim = {"resourceType": "Claim", "id": "c1", "status": "active", "use": "claim",
             "type": {"coding": [{"code": "professional"}]}, "patient": {"reference": "Patient/p1"},
             "created": "2025-03-01", "provider": {"reference": "Practitioner/d1"},
             "priority": {"coding": [{"code": "normal"}]}, "meta": {"lastUpdated": "2025-03-03T10:00:00Z"},
             "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": "Coverage/v1"}}],
             "item": [{"sequence": 1, "productOrService": {"coding": [{"code": "99213"}]},
                       "net": {"value": 100}},
                      {"sequence": 2, "productOrService": {"coding": [{"code": "11102"}]},
                       "net": {"value": 50}}]}
    assert times(normalize(claim)) == {"c1-1": "2025-03-03T10:00:00Z", "c1-2": "2025-03-03T10:00:00Z"}


def test_a_practitioner_and_its_role_make_one_provider_with_the_later_time() -> None:
    doc = bundle({"resourceType": "Practitioner", "id": "d1", "meta": {"lastUpdated": "2025-02-01T00:00:00Z"},
                  "name": [{"family": "Carter"}]},
                 {"resourceType": "PractitionerRole", "id": "r1", "practitioner": {"reference": "Practitioner/d1"},
                  "meta": {"lastUpdated": "2025-01-01T00:00:00Z"}, "specialty": [{"text": "DERM"}]})
    [provider] = normalize(doc)
    assert provider["family_name"] == "Carter" and provider["specialty"] == "DERM"
    assert provider["event_time"] == "2025-02-01T00:00:00Z"


def test_times_without_an_offset_are_naive_or_in_the_configured_zone() -> None:
    doc = bundle(patient("p1", "2025-03-01T09:15:00"), patient("p2"), timestamp="2025-03-02T12:00:00")
    assert times(normalize(doc)) == {"p1": "2025-03-01T09:15:00", "p2": "2025-03-02T12:00:00"}
    assert times(normalize(doc, timezone="America/Denver")) == {"p1": "2025-03-01T09:15:00-07:00",
                                                                "p2": "2025-03-02T12:00:00-07:00"}
