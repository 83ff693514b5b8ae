"""No patient data in any log line: the hub's, and the libraries' (rq's job lines and tracebacks, a database
driver's error text) — hub.logging redacts every record as it is made."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from rq import Queue

from hub.logging import install_redaction, redact
from hub.pipeline.intake import Arrival, receive_many
from hub.plugins import load_plugins
from hub.runtime import Runtime
from hub.store import writer
from hub.store.practices import add_practice
from tests.conftest import ROOT
from tests.intake import feedline as feedline_plugin

# the synthetic patients of this file's input: none of these may reach a log
FAMILY, GIVEN, MRN, DOB = "Quixotelle", "Dulcinetta", "MRN-77GX31", "1961-07-14"
PHI = (FAMILY, GIVEN, MRN, DOB, "19610714")


def test_payload_like_values_are_redacted() -> None:
    hl7 = f"MSH|^~\\&|PM|NORTH|HUB|MSO|20250301||ADT^A04|1|P|2.5.1\rPID|1||{MRN}^^^N^MR||{FAMILY}^{GIVEN}||19610714|F"
    fhir = (f'{{"resourceType": "Patient", "id": "{MRN}", "name": [{{"family": "{FAMILY}", "given": ["{GIVEN}"]}}], '
            f'"birthDate": "{DOB}"}}')
    sql = (f"(psycopg.errors.UniqueViolation) duplicate key\nDETAIL:  Key (source_id)=({MRN}) already exists.\n"
           f"[SQL: INSERT INTO patients (family_name) VALUES (%(f)s)]\n[parameters: {{'f': '{FAMILY}', 'b': '{DOB}'}}]"
           f"\n(Background on this error at: https://sqlalche.me/e/20/gkpj)")
    url = f"GET /api/v1/identity/patients/north/{MRN}?given={GIVEN}"
    for text in (hl7, fhir, sql, url):
        cleaned = redact(text)
        assert not any(value in cleaned for value in PHI), cleaned
    assert redact(hl7).startswith("MSH|…") and "PID|…" in redact(hl7)  # the segment names stay
    assert '"resourceType": "…"' in redact(fhir) and "[SQL: INSERT INTO patients" in redact(sql)
    plain = "POST /api/v1/practices/<string:slug>/messages 200"
    assert redact(plain) == plain  # the hub's own lines pass unchanged


def test_a_logged_traceback_keeps_its_frames_and_types_but_not_the_messages(
        capsys: pytest.CaptureFixture[str]) -> None:
    install_redaction()
    logger = logging.getLogger("tests.redaction")
    handler = logging.StreamHandler(sys.stderr)
    logger.addHandler(handler)
    try:
        try:
            try:
                int(FAMILY)
            except ValueError as exc:
                raise KeyError(f"{GIVEN} {DOB}") from exc
        except KeyError:
            logger.exception("could not read the record of %s", f"PID|1||{MRN}")
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert not any(value in err for value in PHI), err
    assert "Traceback (most recent call last):" in err and "ValueError: (message withheld" in err
    assert "KeyError: (message withheld" in err and "test_log_redaction.py" in err


@pytest.mark.redis
def test_a_batch_that_fails_to_store_under_a_real_rq_worker_logs_no_patient_data(
        tmp_path, monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    """A batch the store refuses (its error quoting the row's values) and a job whose exception quotes a
    patient, run by a real ``hub worker`` at INFO: its whole output (stdout and stderr) names no patient."""
    database_url = f"sqlite:///{tmp_path / 'hub.db'}"
    monkeypatch.setenv("HUB_REDIS_URL", redis_url)
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    runtime = Runtime.create(database_url=database_url, plugins=load_plugins(extra=[feedline_plugin]))
    assert runtime.dispatcher.name == "rq"
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "north", "North")
    payload = f"FEEDLINE\nPAT|{MRN}|{FAMILY}|{GIVEN}|F\n".encode()
    (receipts,) = receive_many(runtime, "north", [Arrival(payload, "phi.feed")])
    assert receipts[0].status == "accepted"
    from redis import Redis

    queue = Queue(os.environ["HUB_QUEUE"], connection=Redis.from_url(redis_url))
    queue.enqueue("tests.security.phi_plugin.explode",
                  {"family": FAMILY, "given": GIVEN, "dob": DOB, "mrn": MRN})  # its arguments quote a patient too

    env = {**os.environ, "HUB_LOG_LEVEL": "INFO", "HUB_PLUGINS": "tests.intake.feedline,tests.security.phi_plugin",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, "-m", "hub", "worker", "--burst"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert "not stored" in output and "store failure" in output, output[-3000:]  # the batch did fail to store
    assert "ValueError" in output, output[-3000:]  # and rq logged the failed job
    leaked = [value for value in PHI if value in output]
    assert not leaked, f"{leaked} in the worker's output:\n{output[-3000:]}"
