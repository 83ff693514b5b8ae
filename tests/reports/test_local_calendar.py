"""Every KPI's day, week and month is the practice-local date of the event.

Times sent with an offset are instants and keep their moment; times sent without one are read in
the practice's IANA zone. The expected slices below are worked out by hand from each zone's rules
(Chicago: UTC-6, UTC-5 from 9 March 2025 02:00 to 2 November 2025 02:00; Phoenix: UTC-7 all year;
Honolulu: UTC-10 all year).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from hub.pipeline.intake import receive
from hub.plugins import load_plugins
from hub.reports import compute_report
from hub.reports.rollups import refresh_dirty
from hub.runtime import Runtime
from hub.store.engine import writer
from hub.store.practices import add_practice
from tests.reports.test_pipeline_rollups import plugin

ZONES = {"chi": "America/Chicago", "phx": "America/Phoenix", "hnl": "Pacific/Honolulu", "utc": None}


@pytest.fixture
def hub_runtime(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    runtime = Runtime.create(database_url=database_url, plugins=load_plugins(extra=[plugin]), dispatcher="inline")
    with writer(runtime.engine).begin() as conn:
        for slug, zone in ZONES.items():
            add_practice(conn, slug, slug.upper(), timezone=zone)
    return runtime


def _visit(source_id: str, start: str) -> dict[str, Any]:
    return {"kind": "appointment", "source_id": source_id, "patient_source_id": f"M-{source_id}",
            "provider_source_id": "DR1", "start": start, "duration_min": 30, "status": "fulfilled"}


def _send(runtime: Runtime, practice: str, records: list[dict[str, Any]]) -> None:
    receipts = receive(runtime, practice, json.dumps(records).encode(), connector="json-records")
    assert all(r.outcome.accepted for r in receipts), [r.outcome.error for r in receipts]


def _visits(runtime: Runtime, practice: str, period: str) -> dict[str, int]:
    refresh_dirty(runtime.engine)  # a report only reads: the cells the ingest marked, recomputed first
    report = compute_report(runtime.engine, by=f"site,{period}", kpis=["visit_volume"],
                            plugins=runtime.plugins).to_dict()
    return {r["slice"][period]: r["values"]["visit_volume"] for r in report["rows"]
            if r["slice"].get("site") == practice and r["values"]["visit_volume"]}


def _stored_start(runtime: Runtime, practice: str, source_id: str) -> str:
    with runtime.engine.connect() as conn:
        return str(conn.execute(sa.text("SELECT start FROM appointments WHERE practice = :p AND source_id = :s"),
                                {"p": practice, "s": source_id}).scalar_one())


def test_the_28_february_visit_counts_in_february_both_ways(hub_runtime: Runtime) -> None:
    # 22:30 on 28 February in Chicago: sent as the UTC instant, and as local time without an offset
    _send(hub_runtime, "chi", [_visit("UTC-SENT", "2025-03-01T04:30:00+00:00"),
                               _visit("LOCAL-SENT", "2025-02-28T22:30:00")])
    assert _stored_start(hub_runtime, "chi", "UTC-SENT") == "2025-02-28T22:30:00-06:00"
    assert _stored_start(hub_runtime, "chi", "LOCAL-SENT") == "2025-02-28T22:30:00-06:00"
    assert _visits(hub_runtime, "chi", "month") == {"2025-02": 2}
    # the same instant at a practice without a zone stays in UTC: March
    _send(hub_runtime, "utc", [_visit("UTC-SENT", "2025-03-01T04:30:00+00:00")])
    assert _visits(hub_runtime, "utc", "month") == {"2025-03": 1}


def test_dst_start_and_end_days_in_chicago(hub_runtime: Runtime) -> None:
    _send(hub_runtime, "chi", [
        # Monday 10 March 00:30 CDT (UTC-5 since Sunday 02:00); a fixed UTC-6 would make it Sunday
        _visit("AFTER-SPRING", "2025-03-10T05:30:00Z"),
        # Sunday 2 November 23:30 CST (UTC-6 since 02:00); a UTC-5 left in force would make it Monday
        _visit("AFTER-FALL", "2025-11-03T05:30:00Z"),
        # wall-clock times of the change days: 01:30 on 2 November happens twice (the first is read);
        # 02:30 on 9 March does not exist (read with the offset before the change)
        _visit("TWICE", "2025-11-02T01:30:00"),
        _visit("SKIPPED", "2025-03-09T02:30:00"),
    ])
    assert _stored_start(hub_runtime, "chi", "AFTER-SPRING") == "2025-03-10T00:30:00-05:00"
    assert _stored_start(hub_runtime, "chi", "AFTER-FALL") == "2025-11-02T23:30:00-06:00"
    assert _stored_start(hub_runtime, "chi", "TWICE") == "2025-11-02T01:30:00-05:00"
    assert _stored_start(hub_runtime, "chi", "SKIPPED") == "2025-03-09T02:30:00-06:00"
    weeks = _visits(hub_runtime, "chi", "week")
    # ISO weeks start on Monday: 10 March opens week 11, Sunday 2 November closes week 44
    assert weeks == {"2025-W10": 1, "2025-W11": 1, "2025-W44": 2}, weeks


def test_phoenix_keeps_standard_time_and_honolulu_is_ten_hours_behind(hub_runtime: Runtime) -> None:
    # 23:30 on 30 June in Phoenix (UTC-7 in summer too); with a DST rule it would be 1 July
    _send(hub_runtime, "phx", [_visit("JUNE", "2025-07-01T06:30:00Z")])
    # 23:00 on 31 March in Honolulu
    _send(hub_runtime, "hnl", [_visit("MARCH", "2025-04-01T09:00:00Z"), _visit("LOCAL", "2025-04-01T00:15:00")])
    assert _stored_start(hub_runtime, "phx", "JUNE") == "2025-06-30T23:30:00-07:00"
    assert _stored_start(hub_runtime, "hnl", "LOCAL") == "2025-04-01T00:15:00-10:00"
    assert _visits(hub_runtime, "phx", "month") == {"2025-06": 1}
    assert _visits(hub_runtime, "hnl", "month") == {"2025-03": 1, "2025-04": 1}


def test_changing_a_practice_zone_reads_its_messages_again(hub_runtime: Runtime) -> None:
    from hub.pipeline.replay import reread_practice
    from hub.store.practices import set_timezone

    # sent while the practice had no zone: 23:00 without an offset was read as UTC
    _send(hub_runtime, "utc", [_visit("LATE", "2025-01-31T23:00:00"), _visit("INSTANT", "2025-02-01T03:00:00Z")])
    assert _visits(hub_runtime, "utc", "month") == {"2025-01": 1, "2025-02": 1}
    with writer(hub_runtime.engine).begin() as conn:
        set_timezone(conn, "utc", "America/Chicago")
    counts = reread_practice(hub_runtime, "utc")
    assert counts["submitted"] == counts["processed"] == 1
    # the wall-clock time stays 23:00 on 31 January, now in Chicago; the instant is 21:00 on 31 January there
    assert _stored_start(hub_runtime, "utc", "LATE") == "2025-01-31T23:00:00-06:00"
    assert _stored_start(hub_runtime, "utc", "INSTANT") == "2025-01-31T21:00:00-06:00"
    assert _visits(hub_runtime, "utc", "month") == {"2025-01": 2}
