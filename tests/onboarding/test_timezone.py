"""A practice's time zone from the command line: required to go live, and a change reads its feed again."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
from click.testing import CliRunner

from hub.cli import cli

# an HL7 feed that sends local times without an offset (MSH-7, EVN-2 and the appointment's start)
SIU = ("MSH|^~\\&|PM|CLINIC|HUB|MSO|20250228223000||SIU^S12^SIU_S12|TZ-0001|P|2.5.1\r"
       "EVN|S12|20250228223000\r"
       "SCH|PL1|FA1|||||NP||30|min|^^30^20250228223000\r"
       "PID|1||MRN1^^^CLINIC^MR||Sampleton^Avery||19790512|F\r"
       "AIS|1|A|99203|20250228223000||30|min\r")


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result.output


def stored_start(runtime) -> str:  # type: ignore[no-untyped-def]
    with runtime.engine.connect() as conn:
        return str(conn.execute(sa.text("SELECT start FROM appointments WHERE source_id = 'FA1'")).scalar_one())


def test_go_live_names_the_missing_zone_and_a_new_zone_reads_the_feed_again(runtime, tmp_path: Path) -> None:
    feed = tmp_path / "siu.hl7"
    feed.write_bytes(SIU.encode())
    run("practice", "add", "clinic", "--name", "Clinic")  # no mapping, no zone
    run("ingest", "--practice", "clinic", str(feed))
    assert stored_start(runtime) == "2025-02-28T22:30:00+00:00"  # no zone yet: read as UTC
    card = run("onboard", "check", "--practice", "clinic", str(feed), code=1)
    assert "times sent without an offset: 1 message(s)" in card and "read in UTC" in card
    refused = run("practice", "go-live", "clinic", code=1)
    assert "no time zone (hub practice set clinic --timezone" in refused
    as_json = CliRunner().invoke(cli, ["practice", "go-live", "clinic", "--format", "json"])
    card = json.loads(as_json.stdout)  # the scorecard, printed with the refusal
    assert as_json.exit_code == 1 and card["live"] is False and "no time zone" in card["refused"]
    assert {"passed", "checks"} <= card.keys()
    changed = run("practice", "set", "clinic", "--timezone", "America/Chicago")
    assert "time zone America/Chicago (was none); 1 stored message(s) read again: 1 processed" in changed
    assert stored_start(runtime) == "2025-02-28T22:30:00-06:00"  # the same wall clock, in Chicago
    assert "already in America/Chicago" in run("practice", "set", "clinic", "--timezone", "America/Chicago")
    bad = run("practice", "set", "clinic", "--timezone", "Mars/Olympus_Mons", code=1)
    assert "unknown time zone 'Mars/Olympus_Mons'" in bad and "Traceback" not in bad
    run("practice", "add", "other", "--name", "Other", "--timezone", "Central", code=1)
