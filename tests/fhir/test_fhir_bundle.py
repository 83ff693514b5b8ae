"""Reading a payload once: the document ``split`` parsed is what ``parse`` maps, within bounds."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from hub_fhir import FhirConnector, bundle

from hub.connector import Context

CONTEXT = Context(practice="p", origin="t.json")


def collection(n: int) -> bytes:
    patients = [{"resource": {"resourceType": "Patient", "id": f"p{n}-{i}", "gender": "female"}} for i in range(3)]
    return orjson.dumps({"resourceType": "Bundle", "type": "collection", "entry": patients})


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the JSON parses (the real ``load`` still does them)."""
    calls: list[int] = []
    real = bundle.load

    def counted(data: bytes) -> dict[str, Any]:
        calls.append(len(data))
        return real(data)

    monkeypatch.setattr(bundle, "load", counted)
    return calls


def test_split_then_parse_reads_the_payload_once(loads: list[int]) -> None:
    connector = FhirConnector()
    [envelope] = connector.split(collection(1))
    records = connector.normalize(envelope, CONTEXT)
    assert len(loads) == 1 and [r["source_id"] for r in records] == ["p1-0", "p1-1", "p1-2"]
    connector.normalize(envelope, CONTEXT)  # taken once: a second parse (a reprocess) reads the bytes again
    assert len(loads) == 2


def test_each_batch_entry_is_read_once(loads: list[int]) -> None:
    connector = FhirConnector()
    entries = [{"resource": {"resourceType": "Location", "id": f"L{i}", "name": "Room"},
                "request": {"method": "PUT", "url": f"Location/L{i}"}} for i in range(3)]
    envelopes = connector.split(orjson.dumps({"resourceType": "Bundle", "type": "batch", "entry": entries}))
    assert [connector.normalize(e, CONTEXT)[0]["source_id"] for e in envelopes] == ["L0", "L1", "L2"]
    assert len(loads) == 1


def test_what_is_kept_between_split_and_parse_is_bounded(loads: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundle, "KEPT_MESSAGES", 2)
    connector = FhirConnector()
    envelopes = [env for n in range(3) for env in connector.split(collection(n))]
    assert len(loads) == 3
    records = [connector.normalize(env, CONTEXT) for env in envelopes]
    assert len(loads) == 4  # the oldest was let go and is read again; the other two were kept
    assert [r[0]["source_id"] for r in records] == ["p0-0", "p1-0", "p2-0"]


def test_kept_or_read_again_the_records_are_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    connector = FhirConnector()
    data = collection(7)
    kept = [r for env in connector.split(data) for r in connector.normalize(env, CONTEXT)]
    monkeypatch.setattr(bundle, "KEPT_BYTES", 0)
    read_again = [r for env in connector.split(data) for r in connector.normalize(env, CONTEXT)]
    assert kept == read_again


def test_what_split_kept_is_let_go_after_a_while(loads: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    connector = FhirConnector()
    first = connector.split(collection(1))  # parsed here by another process, say: never taken
    time.sleep(0.01)
    monkeypatch.setattr(bundle, "KEPT_SECONDS", 0.005)  # the first is now older than that
    second = connector.split(collection(2))
    connector.normalize(second[0], CONTEXT)
    connector.normalize(first[0], CONTEXT)
    assert len(loads) == 3  # both split; the first let go when the second came, so read again
