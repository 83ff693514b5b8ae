"""``hub fhir pull`` loses nothing: only R4 search parameters, one message per resource (a bad one
fails alone), a rerun with nothing new stores nothing, a server's refusal is shown with what the
types before it stored, and ``--page-size``."""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from hub_fhir import pull as fhir_pull
from hub_fhir.pull import (
    INCLUDES,
    PULL_TYPES,
    SEARCH_PARAMS,
    FhirClient,
    PullError,
    auth_from,
    outcome_text,
    per_resource,
    search_url,
)

from hub.runtime import Runtime
from hub.store.canonical import count_records
from hub.store.engine import writer
from hub.store.messages import list_messages
from hub.store.practices import add_practice
from hub.store.pull_state import get_watermark
from tests.fhir.fhir_pull import pull
from tests.fhir.fhir_test_server import R4_COMMON_PARAMS, R4_REFERENCE_PARAMS, R4_RESULT_PARAMS, refusal, running

TOKEN = {"token": "test-token", "page_size": 2}
START = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def hub(tmp_path: Path) -> Runtime:
    runtime = Runtime.create(database_url=f"sqlite:///{tmp_path / 'pull.db'}", dispatcher="inline")
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "north", "North Synthetic Clinic")
    return runtime


def quiet_client() -> FhirClient:
    return FhirClient(auth=auth_from(TOKEN), backoff=0.01, sleep=lambda seconds: None)


def stored(runtime: Runtime) -> tuple[int, int]:
    """Messages stored (with their bytes) and duplicate receipts (a row naming the original, no bytes)."""
    with runtime.engine.connect() as conn:
        rows = list_messages(conn, practice="north", limit=100_000)
    duplicates = sum(1 for r in rows if r["status"] == "duplicate")
    return len(rows) - duplicates, duplicates


def patients(n: int, *, bad: int | None = None) -> list[dict]:
    """``n`` synthetic patients a minute apart; the ``bad`` one has a gender R4 does not know."""
    out = []
    for i in range(n):
        out.append({"resourceType": "Patient", "id": f"syn-{i}", "gender": "robot" if i == bad else "unknown",
                    "name": [{"family": f"Synthetic{i}"}],
                    "meta": {"versionId": "1", "lastUpdated": (START + dt.timedelta(minutes=i)).isoformat()}})
    return out


def test_every_search_the_pull_sends_is_r4() -> None:
    # the pull's own table, against the R4 search-parameter list the test server holds
    assert set(SEARCH_PARAMS) <= R4_RESULT_PARAMS | R4_COMMON_PARAMS
    for rtype, include in INCLUDES.items():
        target, _, param = include.partition(":")
        assert target == rtype and param in R4_REFERENCE_PARAMS[rtype], include
    for rtype in PULL_TYPES:
        url = search_url("https://fhir.example/r4", rtype, "2025-01-01T08:00:00+00:00", 20)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        assert set(query) <= set(SEARCH_PARAMS), rtype
        assert refusal(rtype, query) is None, rtype
    # what a real server refused: R4 has no ExplanationOfBenefit:insurer
    assert "ExplanationOfBenefit" not in INCLUDES
    assert refusal("ExplanationOfBenefit", {"_include": ["ExplanationOfBenefit:insurer"]})
    assert refusal("Patient", {"_lastUpdate": ["ge2025"]})
    assert refusal("Coverage", {"_include": ["Claim:insurer"]})  # another type's parameter


def test_a_refused_search_shows_the_servers_operation_outcome(hub: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(fhir_pull.INCLUDES, "ExplanationOfBenefit", "ExplanationOfBenefit:insurer")
    eob = {"resourceType": "ExplanationOfBenefit", "id": "eob-1", "meta": {"lastUpdated": START.isoformat()}}
    with running([eob]) as server, pytest.raises(PullError) as failed:
        pull(hub, "north", server.base, config=TOKEN, types=["ExplanationOfBenefit"], client=quiet_client())
    message = str(failed.value)
    assert message.startswith(f"the FHIR server answered 400 to {server.base}/ExplanationOfBenefit (")
    assert "OperationOutcome: invalid: Invalid _include parameter value: 'ExplanationOfBenefit:insurer'" in message
    assert "_count" not in message  # the URL is shown without its query
    assert stored(hub) == (0, 0)


def test_outcome_text_is_one_line_cut_short_and_only_an_operation_outcome() -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "invalid", "diagnostics": "bad\n  parameter"},
        {"severity": "error", "code": "not-supported", "details": {"text": "x" * 400}}, "junk"]}
    said = outcome_text(orjson.dumps(outcome))
    assert said.startswith(" (OperationOutcome: invalid: bad parameter; not-supported: xxx")
    assert said.endswith("...)") and len(said) == len(" (OperationOutcome: )") + 300
    assert outcome_text(b"<html>Bad Request</html>") == ""
    assert outcome_text(b'{"resourceType": "Bundle"}') == ""
    assert outcome_text(b'{"resourceType": "OperationOutcome", "issue": []}') == ""


def test_each_resource_is_its_own_message_with_what_it_refers_to() -> None:
    page = {"resourceType": "Bundle", "type": "searchset", "entry": [
        {"fullUrl": "https://f/Coverage/c1", "resource": {"resourceType": "Coverage", "id": "c1",
                                                          "payor": [{"reference": "Organization/o1"}]}},
        {"fullUrl": "https://f/Coverage/c2", "resource": {"resourceType": "Coverage", "id": "c2",
                                                          "payor": [{"reference": "https://f/Organization/o2"}]}},
        {"fullUrl": "https://f/Coverage/c3", "resource": {"resourceType": "Coverage", "id": "c3",
                                                          "payor": [{"reference": "Organization/o1/_history/4"}]}},
        {"fullUrl": "https://f/Organization/o1", "resource": {"resourceType": "Organization", "id": "o1"},
         "search": {"mode": "include"}},
        {"fullUrl": "https://f/Organization/o2", "resource": {"resourceType": "Organization", "id": "o2"},
         "search": {"mode": "include"}},
        {"resource": {"resourceType": "OperationOutcome", "issue": []}, "search": {"mode": "outcome"}}]}
    payloads, matches = per_resource(page, "Coverage")
    assert [m["id"] for m in matches] == ["c1", "c2", "c3"]
    docs = [orjson.loads(p) for p in payloads]
    assert all(d["resourceType"] == "Bundle" and d["type"] == "searchset" for d in docs)
    assert [[e["resource"]["id"] for e in d["entry"]] for d in docs] == [["c1", "o1"], ["c2", "o2"], ["c3", "o1"]]
    assert per_resource({"resourceType": "Bundle", "type": "searchset"}, "Coverage") == ((), [])


def test_hundreds_in_small_pages_a_bad_one_fails_alone_and_a_rerun_stores_nothing(
        hub: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.cli import _build_cli

    monkeypatch.setenv("HUB_DATABASE_URL", hub.database_url)
    monkeypatch.setenv("HUB_FHIR_TOKEN", "test-token")
    served = patients(300, bad=151)  # page 22 of 7 holds patients 147..153: the bad one in its middle
    args = ["fhir", "pull", "--practice", "north", "--type", "Patient", "--page-size", "7", "--format", "json"]
    with running(served) as server:
        first = CliRunner().invoke(_build_cli(), [*args, "--base", server.base])
        assert first.exit_code == 0, first.output
        assert all("_count=7" in r for r in server.requests)
        (report,) = json.loads(first.output)
        assert (report["pages"], report["resources"]) == (43, 300)  # 42 pages of 7 and one of 6
        assert (report["accepted"], report["duplicate"], report["error"]) == (299, 0, 1)
        assert report["high_water"] == served[-1]["meta"]["lastUpdated"]
        with hub.engine.connect() as conn:
            assert count_records(conn, "north")["patient"] == 299  # the bad one's page-mates are all there
            (error,) = list_messages(conn, practice="north", status="error")
        assert "page 22" in error["error"] and "sex" in error["error"] and "robot" not in error["error"]
        assert stored(hub) == (300, 0)

        # nothing new on the server: the resource at the mark is read again (ge), as a duplicate
        again = CliRunner().invoke(_build_cli(), [*args, "--base", server.base])
        assert again.exit_code == 0, again.output
        (report,) = json.loads(again.output)
        assert (report["resources"], report["accepted"], report["duplicate"], report["error"]) == (1, 0, 1, 0)
        assert stored(hub) == (300, 1)  # no new message: one receipt of the repeat, naming the original

        # a new version of the bad patient, fixed, and a new patient: two accepted, the mark moves
        fixed = {**served[151], "gender": "female",
                 "meta": {"versionId": "2", "lastUpdated": "2026-01-01T00:00:00+00:00"}}
        server.add(fixed)
        server.add(patients(1)[0] | {"id": "syn-new", "meta": {"lastUpdated": "2026-01-02T00:00:00+00:00"}})
        third = CliRunner().invoke(_build_cli(), [*args, "--base", server.base])
        (report,) = json.loads(third.output)
        assert (report["accepted"], report["duplicate"], report["error"]) == (2, 1, 0)
        assert get_watermark(hub.engine, "north", server.base, "Patient") == "2026-01-02T00:00:00+00:00"
        with hub.engine.connect() as conn:
            assert count_records(conn, "north")["patient"] == 301


def test_a_server_refusal_still_reports_the_types_done_then_the_error(
        hub: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.cli import _build_cli

    monkeypatch.setenv("HUB_DATABASE_URL", hub.database_url)
    monkeypatch.setenv("HUB_FHIR_TOKEN", "test-token")
    monkeypatch.setitem(fhir_pull.INCLUDES, "ExplanationOfBenefit", "ExplanationOfBenefit:insurer")
    served = patients(3) + [{"resourceType": "ExplanationOfBenefit", "id": "eob-1",
                             "meta": {"lastUpdated": START.isoformat()}}]
    with running(served) as server:
        for fmt in ("text", "json"):
            result = CliRunner().invoke(_build_cli(), [
                "fhir", "pull", "--practice", "north", "--base", server.base, "--type", "Patient",
                "--type", "ExplanationOfBenefit", "--format", fmt, "--since", "2025-01-01"])
            assert result.exit_code == 1, result.output
            summary, _, error = result.output.partition("hub: error:")
            if fmt == "text":
                assert summary.strip().splitlines() == [
                    "Patient: 1 page(s), 3 resource(s); messages accepted 3, duplicate 0, error 0; "
                    f"high-water {served[2]['meta']['lastUpdated']}"]
            else:  # the second run: the same patients again, duplicates
                (report,) = json.loads(summary)
                assert (report["resource_type"], report["accepted"], report["duplicate"]) == ("Patient", 0, 3)
            assert "answered 400" in error and "ExplanationOfBenefit" in error
            assert "Invalid _include parameter value" in error
    with hub.engine.connect() as conn:
        assert count_records(conn, "north")["patient"] == 3


def test_page_size_must_be_positive(hub: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.cli import _build_cli

    monkeypatch.setenv("HUB_DATABASE_URL", hub.database_url)
    result = CliRunner().invoke(_build_cli(), ["fhir", "pull", "--practice", "north", "--page-size", "0"])
    assert result.exit_code == 2 and "--page-size" in result.output
