"""A message no replay can fix: ``hub mapping update --reprocess`` says so by its exit status; marked
resolved, it is listed by the messages API with who resolved it, why and when."""

from __future__ import annotations

import datetime as dt
import getpass
from pathlib import Path

from click.testing import CliRunner

from hub.cli import cli

MAPPING = """version: {version}
practice: lakeview
timezone: America/Chicago
connectors:
  csv:
    exports:
      - kind: appointment
        columns: {{source_id: "Appt ID", patient_source_id: MRN, start: "Appt Date/Time", status: Status}}
"""


def hub(*args: str, code: int = 0) -> tuple[str, str]:
    done = CliRunner().invoke(cli, list(args))
    assert done.exit_code == code, done.output
    return done.stdout, done.stderr


def test_unfixable_error_update_exits_1_then_resolved_is_shown_by_the_api(runtime, tmp_path: Path  # type: ignore[no-untyped-def]
                                                                          ) -> None:
    from hub.app import create_app
    from hub.security.keys import create_key
    from hub.store.engine import writer

    versions = []
    for version in (1, 2, 3):
        path = tmp_path / f"v{version}.yaml"
        path.write_text(MAPPING.format(version=version))
        versions.append(str(path))
    export = tmp_path / "appts.csv"
    export.write_text("Appt ID,MRN,Appt Date/Time,Status\r\nA1,M1,2025-03-03 09:00,booked\r\n"
                      "A2,M2,the day after,booked\r\nA3,M3,2025-03-03 10:00,booked\r\n")
    hub("practice", "add", "lakeview", "--name", "Lakeview", "--mapping", versions[0])
    out, _ = hub("ingest", "--practice", "lakeview", str(export), code=1)
    assert "accepted 2  duplicate 0  error 1" in out

    # the row's bytes are bad: a new mapping cannot fix it, and the exit status says so
    out, err = hub("mapping", "update", "lakeview", versions[1], "--reprocess", code=1)
    assert "reprocessing 3 message(s): processed 2, error 1" in out
    assert "1 message(s) still in error" in err and "hub messages resolve" in err

    with writer(runtime.engine).begin() as conn:
        admin = create_key(conn, "admin")
    client = create_app(runtime).test_client()
    auth = {"Authorization": f"Bearer {admin}"}
    (failed,) = client.get("/api/v1/messages?status=error", headers=auth).get_json()
    assert failed["status"] == "error" and failed["resolution"] is None and "line 3" in failed["error"]

    from hub.onboarding.sources import check_stored

    figures = check_stored(runtime, "lakeview")["messages"]
    assert (figures["read"], figures["refused"], figures["resolved"]) == (3, 1, 0)
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    out, _ = hub("messages", "resolve", str(failed["id"]), "--reason", "resent corrected in the next export")
    assert out.strip() == "resolved 1 message(s)"
    answer = client.get("/api/v1/messages?status=resolved", headers=auth)
    assert answer.status_code == 200
    (resolved,) = answer.get_json()
    assert resolved["id"] == failed["id"] and resolved["status"] == "resolved"
    assert resolved["error"] == failed["error"]  # what was wrong stays readable
    resolution = resolved["resolution"]
    assert resolution["by"] == f"cli:{getpass.getuser()}"
    assert resolution["reason"] == "resent corrected in the next export"
    at = dt.datetime.fromisoformat(resolution["at"])
    assert before <= (at if at.tzinfo else at.replace(tzinfo=dt.UTC)) <= dt.datetime.now(dt.UTC)
    # the go-live scorecard reads it, and no longer counts it refused
    figures = check_stored(runtime, "lakeview")["messages"]
    assert (figures["read"], figures["refused"], figures["resolved"]) == (3, 0, 1)
    processed = client.get("/api/v1/messages?status=processed", headers=auth).get_json()
    assert len(processed) == 2 and all(m["resolution"] is None for m in processed)
    assert client.get("/api/v1/messages?status=bogus", headers=auth).status_code == 422
    spec = client.get("/api/v1/openapi.json").get_json()
    assert "resolution" in spec["components"]["schemas"]["Message"]["properties"]

    # resolved, it is left by the next replay: the update now exits 0
    out, _ = hub("mapping", "update", "lakeview", versions[2], "--reprocess")
    assert "reprocessing 2 message(s): processed 2, error 0" in out
