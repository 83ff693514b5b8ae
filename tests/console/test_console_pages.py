"""The console over the app in process: who gets in (admin by cookie or bearer header; others refused),
the session's rules (CSRF, same origin, revocation, idle time), and what each page shows and audits."""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub.model.tables import audit_log

MAPPING = """version: {version}
practice: lakeview
timezone: America/Chicago
connectors:
  csv:
    exports:
      - kind: appointment
        date_formats: {formats}
        columns: {{source_id: "Appt ID", patient_source_id: MRN, start: "Appt Date/Time", status: Status}}
"""
# one message per row; the first row's date is in a format the first mapping does not read
EXPORT = ("Appt ID,MRN,Appt Date/Time,Status\r\n"
          "A1,M100,2025.03.03 09:00,booked\r\nA2,M200,2025-03-04 10:00,booked\r\n")
ORIGIN = "http://localhost"


@pytest.fixture
def console(runtime: Any, tmp_path: Path) -> dict[str, Any]:
    """A practice with one export row in error under its first mapping (a date format it does not read),
    keys of every role, and a test client."""
    from click.testing import CliRunner

    from hub.app import create_app
    from hub.cli import cli
    from hub.security.keys import create_key
    from hub.store.engine import writer

    for version, formats in ((1, "['%Y-%m-%d %H:%M']"), (2, "['%Y-%m-%d %H:%M', '%Y.%m.%d %H:%M']")):
        (tmp_path / f"v{version}.yaml").write_text(MAPPING.format(version=version, formats=formats))
    (tmp_path / "appts.csv").write_text(EXPORT)
    # another export with the same fault on another line: one group in the error queue with the first
    (tmp_path / "appts-2.csv").write_text("Appt ID,MRN,Appt Date/Time,Status\r\n"
                                          "A3,M300,2025-03-05 11:00,booked\r\nA4,M400,2025.03.06 12:00,booked\r\n")
    runner = CliRunner()
    assert runner.invoke(cli, ["practice", "add", "lakeview", "--name", "Lakeview", "--mapping",
                               str(tmp_path / "v1.yaml")]).exit_code == 0
    runner.invoke(cli, ["ingest", "--practice", "lakeview", str(tmp_path / "appts.csv"), str(tmp_path / "appts-2.csv")])
    with writer(runtime.engine).begin() as conn:
        keys = {"admin": create_key(conn, "admin"), "analyst": create_key(conn, "analyst"),
                "feed": create_key(conn, "feed", "lakeview")}
    app = create_app(runtime, {"TESTING": True})
    return {"client": app.test_client(), "keys": keys, "runtime": runtime, "tmp": tmp_path, "runner": runner}


def sign_in(client: Any, key: str) -> Any:
    return client.post("/console/login", data={"key": key, "next": "/console/errors"}, headers={"Origin": ORIGIN})


def csrf(page: bytes) -> str:
    found = re.search(rb'name="csrf" value="([0-9a-f]+)"', page)
    assert found, "the page has no form with a CSRF token"
    return found.group(1).decode()


def audit_actions(runtime: Any) -> list[tuple[str, str | None]]:
    with runtime.engine.connect() as conn:
        return [(r.action, r.outcome) for r in conn.execute(sa.select(audit_log).order_by(audit_log.c.id))]


def test_no_key_is_sent_to_the_sign_in_form_and_other_roles_are_refused(console: dict[str, Any]) -> None:
    client, keys = console["client"], console["keys"]
    answer = client.get("/console/messages?status=error")
    assert answer.status_code == 302 and "/console/login?next=/console/messages" in answer.headers["Location"]
    for role in ("analyst", "feed"):
        refused = sign_in(client, keys[role])
        assert refused.status_code == 403 and b"for admin keys" in refused.data
        assert "hub_console" not in refused.headers.get("Set-Cookie", "")
        assert client.get("/console/feeds", headers={"Authorization": f"Bearer {keys[role]}"}).status_code == 403
    assert sign_in(client, "hub_000000000000_nottherightsecret").status_code == 401
    assert client.get("/console/feeds", headers={"Authorization": "Bearer hub_x_y"}).status_code == 401
    outcomes = [o for a, o in audit_actions(console["runtime"]) if a == "console.sign_in"]
    assert outcomes == ["refused 403", "refused 403", "refused 401"]


def test_an_admin_signs_in_once_with_a_cookie_that_scripts_cannot_read(console: dict[str, Any]) -> None:
    client = console["client"]
    answer = sign_in(client, console["keys"]["admin"])
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/console/errors")
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("hub_console=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert console["keys"]["admin"].split("_", 2)[2] not in cookie  # the key's secret never travels back
    page = client.get("/console/errors")
    assert page.status_code == 200 and b"Error queue" in page.data
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    # a sign-in form posted from another site is refused
    other = client.post("/console/login", data={"key": console["keys"]["admin"]},
                        headers={"Origin": "https://elsewhere.example"})
    assert other.status_code == 400 and "hub_console" not in other.headers.get("Set-Cookie", "")


def test_forms_need_the_session_s_token_and_this_origin(console: dict[str, Any]) -> None:
    client = console["client"]
    sign_in(client, console["keys"]["admin"])
    token = csrf(client.get("/console/keys").data)
    assert client.post("/console/keys", data={"role": "analyst"}, headers={"Origin": ORIGIN}).status_code == 403
    assert client.post("/console/keys", data={"role": "analyst", "csrf": token},
                       headers={"Origin": "https://elsewhere.example"}).status_code == 403
    made = client.post("/console/keys", data={"role": "analyst", "label": "finance", "csrf": token},
                       headers={"Origin": ORIGIN})
    assert made.status_code == 200
    secret = re.search(rb'<pre class="secret">(hub_[0-9a-f]+_[^<]+)</pre>', made.data)
    assert secret, "the new key is shown once"
    key_id = secret.group(1).decode().split("_")[1]
    assert client.get("/console/keys").data.count(secret.group(1)) == 0  # and never again
    revoked = client.post(f"/console/keys/{key_id}/revoke", data={"csrf": token}, headers={"Origin": ORIGIN})
    assert revoked.status_code == 302
    assert f"<code>{key_id}</code>".encode() in client.get("/console/keys").data
    assert [o for a, o in audit_actions(console["runtime"]) if a in ("keys.create", "keys.revoke")] == [
        "analyst", "revoked"]


def test_revoking_the_key_ends_its_sessions_and_idle_sessions_end(console: dict[str, Any], monkeypatch: Any) -> None:
    from hub.security.keys import revoke_key
    from hub.store.engine import writer

    client, runtime = console["client"], console["runtime"]
    sign_in(client, console["keys"]["admin"])
    assert client.get("/console/feeds").status_code == 200
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 31 * 60)  # past HUB_CONSOLE_IDLE_MINUTES (30)
    assert client.get("/console/feeds").status_code == 302
    monkeypatch.setattr(time, "time", real)
    sign_in(client, console["keys"]["admin"])
    assert client.get("/console/feeds").status_code == 200
    with writer(runtime.engine).begin() as conn:
        revoke_key(conn, console["keys"]["admin"].split("_")[1])
    assert client.get("/console/feeds").status_code == 302


def test_fix_the_mapping_then_reprocess_the_errors_of_one_reason(console: dict[str, Any]) -> None:
    client, runtime = console["client"], console["runtime"]
    sign_in(client, console["keys"]["admin"])
    errors = client.get("/console/errors")
    assert errors.data.count(b"Reprocess these") == 1 and b">2</a>" in errors.data  # two files, one fault
    (failed,) = re.findall(rb'href="/console/messages/(\d+)"', errors.data)  # the group's latest
    page = client.get(f"/console/messages/{failed.decode()}")
    assert page.status_code == 200
    assert b"A4,M400,2025.03.06 12:00" in page.data  # the content, for the admin, audited
    assert ("console.message", "content shown") in audit_actions(runtime)
    assert console["runner"].invoke(__import__("hub.cli", fromlist=["cli"]).cli, [
        "practice", "mapping", "lakeview", str(console["tmp"] / "v2.yaml")]).exit_code == 0
    token = csrf(errors.data)
    pattern = re.search(rb'name="pattern" value="([^"]*)"', errors.data).group(1).decode()  # type: ignore[union-attr]
    import html

    form = {"csrf": token, "practice": "lakeview", "pattern": html.unescape(pattern)}
    confirm = client.post("/console/errors/reprocess", data=form, headers={"Origin": ORIGIN})
    assert confirm.status_code == 200 and b"Reprocess 2 messages?" in confirm.data
    done = client.post("/console/errors/reprocess", data={**form, "confirm": "2"}, headers={"Origin": ORIGIN})
    assert done.status_code == 302
    assert b"No message is in error." in client.get("/console/errors").data
    listed = client.get("/console/messages?practice=lakeview&status=processed")
    assert listed.data.count(b'class="badge processed"') == 4
    # the message page now reads two records through the fixed mapping
    again = client.get(f"/console/messages/{failed.decode()}").data
    assert b"Reprocess this message" in again and again.count(b"<td>A4</td>") == 2  # read now, and in lineage


def test_message_search_by_mrn_type_and_dates_and_an_empty_result_says_so(console: dict[str, Any]) -> None:
    client, runtime = console["client"], console["runtime"]
    sign_in(client, console["keys"]["admin"])
    today = dt.datetime.now(dt.UTC).date()
    assert b"No message matches" in client.get("/console/messages?mrn=M100").data  # in error: no lineage yet
    assert client.get("/console/messages?mrn=M200").data.count(b'href="/console/messages/') == 1
    everything = client.get(f"/console/messages?since={today}&until={today}")
    assert everything.data.count(b'href="/console/messages/') == 4
    assert b"No message matches" in client.get(f"/console/messages?since={today + dt.timedelta(days=1)}").data
    assert client.get("/console/messages?since=yesterday").status_code == 400
    searched = [o for a, o in audit_actions(runtime) if a == "console.messages"]
    assert len(searched) == 4
    with runtime.engine.connect() as conn:
        targets = [r.target for r in conn.execute(sa.select(audit_log).where(audit_log.c.action == "console.messages"))]
    assert targets[0] == "mrn=*"  # what was searched by, never the MRN searched for


def test_errors_of_one_kind_group_whatever_file_or_line_they_name() -> None:
    from hub.store.messages import reason_pattern

    first = reason_pattern("/in/a.csv, line 2: column 'When' is not a date-time", "/in/a.csv")
    assert first == reason_pattern("/in/b.csv, line 31: column 'When' is not a date-time", "/in/b.csv")
    assert first == "line #: column 'When' is not a date-time"
    assert reason_pattern("SCH-11: no readable start", None) != reason_pattern("PID-3: no MRN", None)
    assert reason_pattern(None, "x") == ""


def test_reprocess_one_message_and_every_message_a_search_finds_after_a_count(console: dict[str, Any]) -> None:
    client, runtime = console["client"], console["runtime"]
    sign_in(client, console["keys"]["admin"])
    assert console["runner"].invoke(__import__("hub.cli", fromlist=["cli"]).cli, [
        "practice", "mapping", "lakeview", str(console["tmp"] / "v2.yaml")]).exit_code == 0
    listed = client.get("/console/messages?status=error")
    first, second = (int(i) for i in re.findall(rb'href="/console/messages/(\d+)"', listed.data))
    token = csrf(listed.data)
    one = client.post(f"/console/messages/{first}/reprocess", data={"csrf": token}, headers={"Origin": ORIGIN})
    assert one.status_code == 302 and "done=1+reprocessed" in one.headers["Location"]
    assert b'class="badge processed"' in client.get(f"/console/messages/{first}").data
    # every message in error now: one left; the first answer counts them, the second replays those very ids
    form = {"csrf": token, "status": "error", "practice": "lakeview"}
    asked = client.post("/console/messages/reprocess", data=form, headers={"Origin": ORIGIN})
    assert asked.status_code == 200 and b"Reprocess 1 message?" in asked.data
    stale = client.post("/console/messages/reprocess", data={**form, "confirm": "5"}, headers={"Origin": ORIGIN})
    assert stale.status_code == 200 and b"Reprocess 1 message?" in stale.data  # a count that no longer holds
    done = client.post("/console/messages/reprocess", data={**form, "confirm": "1"}, headers={"Origin": ORIGIN})
    assert done.status_code == 302
    assert b'class="badge processed"' in client.get(f"/console/messages/{second}").data
    assert b"No message matches" in client.get("/console/messages?status=error").data
    outcomes = [o for a, o in audit_actions(runtime) if a == "messages.reprocess"]
    assert outcomes == ["1 reprocessed: 1 processed, 0 in error"] * 2


CODED = """version: 1
practice: eastside
connectors:
  csv:
    exports:
      - kind: appointment
        date_formats: ['%Y-%m-%d %H:%M']
        columns: {source_id: "Appt ID", patient_source_id: MRN, start: "Appt Date/Time", status: Status,
                  visit_type: "Appt Type"}
code_maps:
  visit_type:
    NP: {service_line: medical_dermatology, visit_category: new}
"""


def test_onboarding_lists_the_practice_and_its_scorecard_links_an_unmapped_code_to_its_message(
        console: dict[str, Any]) -> None:
    client, runtime, tmp = console["client"], console["runtime"], console["tmp"]
    from hub.cli import cli

    (tmp / "eastside.yaml").write_text(CODED)
    (tmp / "eastside.csv").write_text("Appt ID,MRN,Appt Date/Time,Status,Appt Type\r\n"
                                      "E1,M1,2025-03-03 09:00,booked,NP\r\nE2,M2,2025-03-03 10:00,booked,ZZTOP\r\n"
                                      "E3,M3,2025-03-03 11:00,booked,ZZTOP\r\n")
    assert console["runner"].invoke(cli, ["practice", "add", "eastside", "--name", "Eastside", "--mapping",
                                          str(tmp / "eastside.yaml")]).exit_code == 0
    assert console["runner"].invoke(cli, ["ingest", "--practice", "eastside", str(tmp / "eastside.csv")]).exit_code == 0
    sign_in(client, console["keys"]["admin"])
    listing = client.get("/console/onboarding").data.decode()
    assert "eastside" in listing and "/console/onboarding/eastside" in listing
    card = client.get("/console/onboarding/eastside")
    assert card.status_code == 200
    text = card.data.decode()
    assert re.search(r"Go-live gate:\s+not passed", text)  # one visit type in three is mapped: 0.333 < 0.95
    row = re.search(r"<tr><td>visit_type</td><td><code>ZZTOP</code></td><td class=\"num\">2</td><td>(.*?)</td></tr>",
                    text)
    assert row, text
    example = re.search(r'href="/console/messages/(\d+)">message (\d+)</a>', row.group(1))
    assert example and example.group(1) == example.group(2)
    shown = client.get(f"/console/messages/{example.group(1)}").data.decode()
    assert "ZZTOP" in shown and "eastside" in shown  # the example is a row with that code
    assert ("scorecard.read", "200") in audit_actions(runtime)
