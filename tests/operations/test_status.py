"""``hub status`` and ``hub messages list`` as an operator reads them: counts, times, silence, searches."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

from hub.cli import _build_cli
from hub.operations.health import feed_status
from tests.operations.store_rows import arrive, practice


@pytest.fixture
def runtime_here():  # type: ignore[no-untyped-def]
    """A runtime on the test's own store (HUB_DATABASE_URL of tests/conftest.py), the one the CLI opens."""
    from hub.runtime import Runtime

    return Runtime.create(dispatcher="inline")


def hub(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(_build_cli(), list(args))
    return result.exit_code, result.output


def test_status_counts_the_last_hour_and_day_per_practice_and_connector(runtime):
    now = dt.datetime(2026, 3, 4, 15, 0, tzinfo=dt.UTC)
    practice(runtime, "derm", mapping="alerts:\n  silence: {minutes: 30}\n")
    practice(runtime, "ent", status="onboarding")
    ago = lambda **kw: now - dt.timedelta(**kw)  # noqa: E731
    arrive(runtime, "derm", ago(minutes=10), n=2)
    arrive(runtime, "derm", ago(minutes=20), status="duplicate")
    arrive(runtime, "derm", ago(minutes=30), status="error")
    arrive(runtime, "derm", ago(minutes=5), status="received")
    arrive(runtime, "derm", ago(hours=3))
    arrive(runtime, "derm", ago(days=2))
    arrive(runtime, "derm", ago(minutes=50), connector="x12", message_type="835")
    arrive(runtime, "derm", now + dt.timedelta(minutes=1))  # after the clock: not seen yet
    with runtime.engine.connect() as conn:
        lines = feed_status(conn, now=now)
    by_feed = {(line["practice"], line["connector"]): line for line in lines}
    assert list(by_feed) == [("derm", "hl7v2"), ("derm", "x12"), ("ent", None)]
    hl7 = by_feed[("derm", "hl7v2")]
    assert hl7["status"] == "live"
    assert hl7["last_hour"] == {"received": 5, "processed": 2, "duplicate": 1, "error": 1}
    assert hl7["last_day"] == {"received": 6, "processed": 3, "duplicate": 1, "error": 1}
    assert hl7["queue"] == 1 and hl7["oldest_waiting"] == ago(minutes=5)
    assert hl7["last_received"] == ago(minutes=5)
    assert hl7["last_processed"] == ago(minutes=10) + dt.timedelta(seconds=1)
    assert (hl7["silence_minutes"], hl7["expected_minutes"], hl7["silent"]) == (5.0, 30, False)
    x12 = by_feed[("derm", "x12")]
    assert x12["last_hour"]["received"] == 1 and x12["silence_minutes"] == 50.0 and x12["silent"] is True
    assert by_feed[("ent", None)]["status"] == "onboarding" and by_feed[("ent", None)]["last_received"] is None


def test_hub_status_prints_a_header_and_one_line_per_feed_and_json(runtime_here):
    practice(runtime_here, "derm")
    arrive(runtime_here, "derm", dt.datetime.now(dt.UTC) - dt.timedelta(minutes=3), n=2)
    code, text = hub("status")
    assert code == 0, text
    header, line = text.splitlines()
    assert header.split()[:4] == ["PRACTICE", "CONNECTOR", "STATUS", "LAST"]
    assert line.split()[:3] == ["derm", "hl7v2", "live"] and "2/2/0/0" in line and " 3m" in line
    code, out = hub("status", "--format", "json")
    feeds = json.loads(out)["feeds"]
    assert [(f["practice"], f["connector"], f["last_day"]["processed"], f["queue"]) for f in feeds] == \
        [("derm", "hl7v2", 2, 0)]


def test_messages_list_searches_by_dates_type_control_id_and_mrn_and_audits_the_mrn(runtime_here):
    practice(runtime_here, "derm")
    day = dt.datetime(2026, 3, 4, 12, 0, tzinfo=dt.UTC)
    early = arrive(runtime_here, "derm", day - dt.timedelta(days=1), message_type="SIU^S12", control_id="A1",
                   mrn="MRN00001")
    mid = arrive(runtime_here, "derm", day, message_type="ADT^A08", control_id="B2", mrn="MRN00002")
    late = arrive(runtime_here, "derm", day + dt.timedelta(days=1), message_type="SIU^S15", control_id="C3",
                  mrn="MRN00001")

    def ids(*args: str) -> list[int]:
        code, out = hub("messages", "list", "--format", "json", *args)
        assert code == 0, out
        return [m["id"] for m in json.loads(out)]

    assert ids() == late + mid + early
    assert ids("--since", "2026-03-04") == late + mid
    assert ids("--since", "2026-03-04", "--until", "2026-03-04T12:00") == []
    assert ids("--since", "2026-03-04", "--until", "2026-03-04T12:00:01") == mid
    assert ids("--type", "SIU*") == late + early
    assert ids("--type", "SIU^S15") == late
    assert ids("--control-id", "B2") == mid
    assert ids("--mrn", "MRN00001", "--practice", "derm") == late + early

    code, text = hub("messages", "list", "--type", "ORU*")
    assert (code, text) == (0, "no message matches\n")
    code, text = hub("messages", "list", "--practice", "derm")
    header, *rows = text.splitlines()
    assert header.split()[:4] == ["ID", "RECEIVED", "PROCESSED", "PRACTICE"]
    assert rows[0].split()[:3] == [str(late[0]), "2026-03-05T12:00:00Z", "2026-03-05T12:00:01Z"]

    code, audit = hub("audit", "list", "--action", "messages.list", "--format", "json")
    targets = [entry["target"] for entry in json.loads(audit)]
    assert "patient derm/MRN00001" in targets
    assert all(entry["address"].startswith("cli:") for entry in json.loads(audit))


def test_messages_list_refuses_an_until_before_since(runtime_here):
    result = CliRunner().invoke(_build_cli(), ["messages", "list", "--since", "2026-03-05", "--until", "2026-03-04"])
    assert result.exit_code == 1
    assert "--until 2026-03-04T00:00:00 is not after --since 2026-03-05T00:00:00" in result.output


def test_long_practice_slugs_and_control_ids_keep_the_columns_aligned(runtime_here):
    long_slug = "northshore-dermatology-and-mohs"  # 31 characters: wider than any fixed column
    for slug in ("derm", long_slug):
        practice(runtime_here, slug)
    at = dt.datetime(2026, 3, 4, 12, 0, tzinfo=dt.UTC)
    arrive(runtime_here, "derm", at, control_id="C1")
    arrive(runtime_here, long_slug, at, control_id="LONGCONTROLID-0000000000001")
    for args, column in ((("messages", "list"), "STATUS"), (("status",), "STATUS")):
        code, text = hub(*args)
        assert code == 0, text
        header, *rows = text.splitlines()
        start = header.index(column)
        assert len(rows) == 2
        for row in rows:  # every row's status word starts under the header's
            assert row[start:].split()[0] in ("processed", "live"), (args, row)
