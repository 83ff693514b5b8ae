"""FHIR duplicates: a message is the resource versions it carries (type, id, meta.versionId, else
meta.lastUpdated), else its bytes; applied per stored message (a resource, a Bundle, a batch entry)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hub_fhir import FhirConnector

from hub.connector import content_key
from hub.pipeline.intake import receive
from hub.store.canonical import fetch_records
from hub.store.engine import writer
from hub.store.messages import list_messages
from hub.store.practices import add_practice


def patient(version: str | None = "1", family: str = "Testfamily", updated: str | None = None,
            rid: str | None = "pat-1") -> dict[str, Any]:
    meta = {k: v for k, v in (("versionId", version), ("lastUpdated", updated)) if v is not None}
    doc: dict[str, Any] = {"resourceType": "Patient", "gender": "female", "birthDate": "1990-02-03",
                           "identifier": [{"system": "urn:synthetic:mrn", "value": "SYN-1"}],
                           "name": [{"family": family, "given": ["Ada"]}]}
    if rid is not None:
        doc["id"] = rid
    if meta:
        doc["meta"] = meta
    return doc


def keys(data: bytes | dict[str, Any]) -> list[str]:
    connector = FhirConnector()
    raw = data if isinstance(data, bytes) else orjson.dumps(data)
    return [connector.store_key(envelope) for envelope in connector.split(raw)]


def bundle(kind: str, *resources: dict[str, Any], **extra: Any) -> dict[str, Any]:
    entries = [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r.get('id')}"}}
               if kind in ("batch", "transaction") else {"resource": r} for r in resources]
    return {"resourceType": "Bundle", "type": kind, "entry": entries, **extra}


# ------------------------------------------------------------------ the key itself
def test_same_type_id_and_version_is_one_message_whatever_the_bytes() -> None:
    compact = orjson.dumps(patient())
    indented = json.dumps(patient(), indent=2).encode()
    assert compact != indented and keys(compact) == keys(indented)
    assert keys(patient(family="Otherfamily")) == keys(patient())  # a server's version names one content
    assert keys(patient(version="2")) != keys(patient())
    # lastUpdated counts beside versionId: a sender keeping version 1 across changes still gets them in
    at_one = patient(updated="2025-01-01T00:00:00Z")
    assert keys(at_one) == keys(json.dumps(at_one, indent=1).encode())
    assert keys(patient(updated="2025-01-02T00:00:00Z")) != keys(at_one) != keys(patient())


def test_last_updated_when_there_is_no_version_id_else_the_bytes() -> None:
    at_one = patient(version=None, updated="2025-01-01T10:00:00Z")
    assert keys(at_one) == keys(json.dumps(at_one, indent=1).encode())
    assert keys(patient(version=None, updated="2025-01-02T10:00:00Z")) != keys(at_one)
    bare = orjson.dumps(patient(version=None))
    assert keys(bare) == [content_key(bare)]
    no_id = orjson.dumps(patient(rid=None))
    assert keys(no_id) == [content_key(no_id)]


def test_a_bundle_is_keyed_by_the_set_of_its_resource_versions() -> None:
    other = {"resourceType": "Location", "id": "loc-1", "name": "East", "meta": {"versionId": "3"}}
    first = bundle("transaction", patient(), other, id="b-1", timestamp="2025-01-01T00:00:00Z")
    # another Bundle id, timestamp, type and entry order: the same resource versions
    again = bundle("collection", other, patient(), id="b-2", timestamp="2025-02-01T00:00:00Z")
    assert keys(first) == keys(again)
    assert keys(bundle("transaction", patient(version="2"), other)) != keys(first)
    assert keys(bundle("transaction", patient(), other, patient(rid="pat-2"))) != keys(first)
    unversioned = orjson.dumps(bundle("transaction", patient(), patient(rid="pat-2", version=None)))
    assert keys(unversioned) == [content_key(unversioned)]  # any entry without a version: the bytes


def test_a_batch_is_keyed_entry_by_entry_like_the_resource_alone() -> None:
    batch = keys(bundle("batch", patient(), patient(rid="pat-2"), patient(version="2"),
                        timestamp="2025-03-01T00:00:00Z"))
    assert len(batch) == 3 and len(set(batch)) == 3
    assert batch[0] == keys(patient())[0]  # the entry is the same message as the resource sent alone
    assert batch[0] == keys(bundle("batch", patient(), timestamp="2025-03-02T00:00:00Z"))[0]


# ------------------------------------------------------------------ through the intake
@pytest.fixture
def hub(runtime):  # type: ignore[no-untyped-def]
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "north", "North Synthetic Clinic")
    return runtime


def stored(runtime) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    with runtime.engine.connect() as conn:
        return sorted(list_messages(conn, practice="north"), key=lambda r: r["id"])


def test_a_version_resent_is_a_duplicate_and_a_new_version_a_new_message(hub) -> None:  # type: ignore[no-untyped-def]
    v1 = patient(updated="2025-01-01T10:00:00Z")
    v2 = patient(version="2", family="Newfamily", updated="2025-01-02T10:00:00Z")
    assert [r.status for r in receive(hub, "north", orjson.dumps(v1), connector="fhir")] == ["accepted"]
    resent = receive(hub, "north", json.dumps(v1, indent=2).encode(), connector="fhir")  # other bytes
    in_batch = receive(hub, "north", orjson.dumps(bundle("batch", v1)), connector="fhir")
    assert [r.status for r in resent] == [r.status for r in in_batch] == ["duplicate"]
    assert [r.status for r in receive(hub, "north", orjson.dumps(v2), connector="fhir")] == ["accepted"]
    rows = stored(hub)
    assert [r["status"] for r in rows] == ["processed", "duplicate", "duplicate", "processed"]
    assert rows[1]["duplicate_of"] == rows[2]["duplicate_of"] == rows[0]["id"]
    with hub.engine.connect() as conn:
        (record,) = fetch_records(conn, "patient", "north")
    assert record["family_name"] == "Newfamily"


def test_a_page_pulled_again_is_a_duplicate(hub, corpus: Path) -> None:  # type: ignore[no-untyped-def]
    from hub_fhir.pull import FhirClient, auth_from

    from tests.fhir.fhir_pull import pull
    from tests.fhir.fhir_test_server import PULL_CORPUS_FILES, corpus_resources, running

    config = {"token": "test-token", "page_size": 1}
    resources = corpus_resources(corpus / "fhir", PULL_CORPUS_FILES)
    with running(resources) as server:
        client = FhirClient(backoff=0.01, sleep=lambda seconds: None, auth=auth_from(config))
        (first,) = pull(hub, "north", server.base, config=config, types=["Patient"], client=client)
        (again,) = pull(hub, "north", server.base, config=config, types=["Patient"], client=client)
    assert first.duplicate == 0 and first.pages > 1
    # the rerun asks from the mark on (ge: never a gap) and gets the newest patient's page again: the
    # page's bytes differ (its self link), its resource version does not
    assert again.pages == 1 and again.duplicate == 1 and again.accepted == 0
