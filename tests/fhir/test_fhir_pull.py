"""``hub fhir pull`` against a FHIR server started on a loopback port, serving the corpus in pages."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from hub_fhir.pull import FhirClient, PullError, SmartBackendAuth, retry_after

from hub.runtime import Runtime
from hub.store.canonical import count_records
from hub.store.engine import writer
from hub.store.messages import list_messages
from hub.store.practices import add_practice
from hub.store.pull_state import get_watermark, list_watermarks
from tests.fhir.fhir_pull import pull
from tests.fhir.fhir_test_server import PULL_CORPUS_FILES, corpus_resources, running

TOKEN = {"token": "test-token", "page_size": 2}


@pytest.fixture
def hub(tmp_path: Path) -> Runtime:
    runtime = Runtime.create(database_url=f"sqlite:///{tmp_path / 'pull.db'}", dispatcher="inline")
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "north", "North Synthetic Clinic")
    return runtime


@pytest.fixture
def resources(corpus: Path) -> list[dict]:
    found = corpus_resources(corpus / "fhir", PULL_CORPUS_FILES)
    assert len(found) > 20
    return found


def quiet_client(**kw) -> FhirClient:  # type: ignore[no-untyped-def]
    return FhirClient(backoff=0.01, sleep=lambda seconds: None, **kw)  # waits are recorded in client.waits


def test_pull_reads_every_page_and_a_rerun_resumes(hub: Runtime, resources: list[dict]) -> None:
    from hub_fhir.pull import auth_from

    with running(resources) as server:
        reports = pull(hub, "north", server.base, config=TOKEN, client=quiet_client(auth=auth_from(TOKEN)))
        by_type = {r.resource_type: r for r in reports}
        served = {t: sum(1 for r in resources if r["resourceType"] == t) for t in by_type}
        for rtype, report in by_type.items():
            assert report.resources == served[rtype], rtype
            assert report.pages == max(1, -(-served[rtype] // 2)), rtype  # two per page, Bundle.link next
        with hub.engine.connect() as conn:
            counts = count_records(conn, "north")
        assert counts["patient"] >= served["Patient"] - 1  # Patient/3 has no id in the corpus; others map
        assert counts["appointment"] and counts["charge"] and counts["remittance"] and counts["slot"]
        patient_mark = get_watermark(hub.engine, "north", server.base, "Patient")
        newest = max(r["meta"]["lastUpdated"] for r in resources if r["resourceType"] == "Patient")
        assert patient_mark == newest

        # a rerun asks only for what changed since the mark, and finds the new resource
        server.requests.clear()
        new_patient = {"resourceType": "Patient", "id": "syn-new", "gender": "unknown",
                       "meta": {"lastUpdated": "2026-01-01T00:00:00+00:00"}}
        server.add(new_patient)
        again = {r.resource_type: r for r in pull(hub, "north", server.base, config=TOKEN, types=["Patient"],
                                                  client=quiet_client(auth=auth_from(TOKEN)))}
        assert "_lastUpdated=ge" in server.requests[0]
        assert again["Patient"].resources == 2  # the one at the mark again (ge: never a gap) and the new one
        assert get_watermark(hub.engine, "north", server.base, "Patient") == "2026-01-01T00:00:00+00:00"


def test_a_run_that_dies_mid_way_resumes_after_the_last_stored_page(hub: Runtime, resources: list[dict]) -> None:
    from hub_fhir.pull import auth_from

    with running(resources) as server:
        server.faults["Patient#2"] = [500] * 3
        with pytest.raises(PullError, match="500"):
            pull(hub, "north", server.base, config=TOKEN, types=["Patient"],
                 client=quiet_client(auth=auth_from(TOKEN), attempts=3))
        patients = sorted((r for r in resources if r["resourceType"] == "Patient"),
                          key=lambda r: r["meta"]["lastUpdated"])
        assert get_watermark(hub.engine, "north", server.base, "Patient") == patients[1]["meta"]["lastUpdated"]
        server.requests.clear()
        report = pull(hub, "north", server.base, config=TOKEN, types=["Patient"],
                      client=quiet_client(auth=auth_from(TOKEN)))[0]
        assert report.resources == len(patients) - 1  # from the second patient on
        assert get_watermark(hub.engine, "north", server.base, "Patient") == patients[-1]["meta"]["lastUpdated"]


def test_429_waits_for_retry_after_and_5xx_backs_off(hub: Runtime, resources: list[dict]) -> None:
    from hub_fhir.pull import auth_from

    with running(resources) as server:
        server.faults["Location"] = [429, 503, 502]
        client = quiet_client(auth=auth_from(TOKEN))
        report = pull(hub, "north", server.base, config=TOKEN, types=["Location"], client=client)[0]
        assert report.resources == sum(1 for r in resources if r["resourceType"] == "Location")
        assert client.waits == [1.0, 0.02, 0.04]  # Retry-After on the 429, then backoff doubling on 5xx


def test_without_the_token_the_server_refuses_and_nothing_moves(hub: Runtime, resources: list[dict]) -> None:
    with running(resources) as server, pytest.raises(PullError, match="401"):
        pull(hub, "north", server.base, config={}, types=["Patient"], client=quiet_client())
    assert list_watermarks(hub.engine, "north") == []
    with hub.engine.connect() as conn:
        assert list_messages(conn, practice="north") == []


def test_smart_backend_services_client_credentials(hub: Runtime, resources: list[dict], tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    key_file = tmp_path / "client.pem"
    key_file.write_text(pem)
    with running(resources) as server:
        server.public_key = key.public_key()
        token_url = server.base.replace("/fhir", "/token")
        config = {"client_id": "hub-test-client", "token_url": token_url, "private_key": str(key_file)}
        auth = SmartBackendAuth("hub-test-client", token_url, str(key_file))
        report = pull(hub, "north", server.base, config=config, types=["Practitioner"],
                      client=quiet_client(auth=auth))[0]
        assert report.resources and report.error == 0
        wrong = SmartBackendAuth("someone-else", token_url, pem)
        with pytest.raises(PullError, match="token endpoint refused"):
            pull(hub, "north", server.base, config=config, types=["Practitioner"], client=quiet_client(auth=wrong))


def test_the_cli_command(hub: Runtime, resources: list[dict], monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.cli import _build_cli

    monkeypatch.setenv("HUB_DATABASE_URL", hub.database_url)
    monkeypatch.setenv("HUB_FHIR_TOKEN", "test-token")
    with running(resources) as server:
        result = CliRunner().invoke(_build_cli(), ["fhir", "pull", "--practice", "north", "--base", server.base,
                                                   "--type", "Location", "--since", "2024-12-31"])
        assert result.exit_code == 0, result.output
        assert "Location: 1 page(s)" in result.output
        assert "_lastUpdated=ge2024-12-31" in server.requests[0]
        bad = CliRunner().invoke(_build_cli(), ["fhir", "pull", "--practice", "north", "--base", "ftp://x"])
        assert bad.exit_code == 1 and "hub: error:" in bad.output


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("7") == 7.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after("soon") is None
