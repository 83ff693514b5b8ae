"""The month in progress against the same days of the month before, in the practices' local calendar.

The data, by hand (every appointment at 09:00 local unless said otherwise):
- east (New York): January 2025, one fulfilled visit and one $10.00 charge on each of days 1 to 31;
  February, on each of days 1 to 28, one fulfilled appointment, a second one that is a no-show on even
  days and fulfilled on odd days, and one $100.00 charge; March, three fulfilled visits and one $50.00
  charge on each of days 1 to 28. February 10th's second appointment is sent as the UTC instant
  2025-02-11T03:30Z: 22:30 on the 10th in New York, so it counts on the 10th.
- west (Los Angeles): one fulfilled visit on each of days 1 to 28 of February and of March, with no service
  line; no charge feed at all, so it is left out of the charge KPIs (and of their MSO totals).

So February 1-10 holds at east 20 appointments, 5 of them no-shows (days 2, 4, 6, 8, 10), 15 visits and
$1,000.00 of charges; at west 10 visits. The whole of February: east 56 appointments, 14 no-shows, 42
visits, $2,800.00; west 28 visits. January 1-28: east 28 visits and $280.00 (the whole month: 31, $310.00).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from hub.pipeline.intake import receive
from hub.plugins import load_plugins
from hub.reports import compute_report, same_days
from hub.reports.attribution import UNATTRIBUTED
from hub.reports.rollups import refresh_dirty
from hub.runtime import Runtime
from hub.store.engine import writer
from hub.store.practices import add_practice
from tests.support.json_records import plugin

NOT_BY_DAY = {"days_in_ar", "ar_over_90_share", "patient_retention", "costs", "margin", "margin_rate"}


@pytest.fixture
def hub_runtime(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    monkeypatch.setenv("HUB_DATABASE_URL", database_url)
    runtime = Runtime.create(database_url=database_url, plugins=load_plugins(extra=[plugin]), dispatcher="inline")
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "east", "East", timezone="America/New_York")
        add_practice(conn, "west", "West", timezone="America/Los_Angeles")
    _send(runtime, "east", _east())
    _send(runtime, "west", _west())
    refresh_dirty(runtime.engine)
    return runtime


def _appt(source_id: str, start: str, status: str = "fulfilled") -> dict[str, Any]:
    return {"kind": "appointment", "source_id": source_id, "patient_source_id": f"M-{source_id}",
            "provider_source_id": "DR1", "service_line": "dermatology", "start": start, "duration_min": 20,
            "status": status}


def _charge(source_id: str, day: str, amount: str) -> dict[str, Any]:
    return {"kind": "charge", "source_id": source_id, "patient_source_id": f"M-{source_id}", "service_date": day,
            "procedure_code": "99213", "amount": amount, "service_line": "dermatology",
            "financial_class": "commercial"}


def _east() -> list[dict[str, Any]]:
    out = []
    for d in range(1, 32):
        out += [_appt(f"J{d}", f"2025-01-{d:02d}T09:00:00"), _charge(f"CJ{d}", f"2025-01-{d:02d}", "10.00")]
    for d in range(1, 29):
        second = "2025-02-11T03:30:00Z" if d == 10 else f"2025-02-{d:02d}T14:00:00"
        out += [_appt(f"F{d}a", f"2025-02-{d:02d}T09:00:00"),
                _appt(f"F{d}b", second, "noshow" if d % 2 == 0 else "fulfilled"),
                _charge(f"CF{d}", f"2025-02-{d:02d}", "100.00")]
        out += [_appt(f"M{d}{k}", f"2025-03-{d:02d}T09:00:00") for k in "abc"]
        out.append(_charge(f"CM{d}", f"2025-03-{d:02d}", "50.00"))
    return out


def _west() -> list[dict[str, Any]]:
    out = [_appt(f"W{m}{d}", f"2025-{m:02d}-{d:02d}T09:00:00") for m in (2, 3) for d in range(1, 29)]
    for record in out:
        del record["service_line"]  # west's visits carry none: they are a bucket of their own
    return out


def _send(runtime: Runtime, practice: str, records: list[dict[str, Any]]) -> None:
    receipts = receive(runtime, practice, json.dumps(records).encode(), connector="json-records")
    assert all(r.outcome.accepted for r in receipts), [r.outcome.error for r in receipts]


def _report(runtime: Runtime, today: dt.date) -> dict[str, Any]:
    return compute_report(runtime.engine, by="site,month", today=today, plugins=runtime.plugins).to_dict()


def _row(report: dict[str, Any], section: str, month: str, site: str | None = None) -> dict[str, Any]:
    return next(r for r in report[section] if r["slice"].get("month") == month and r["slice"].get("site") == site)


def test_the_tenth_compares_with_the_first_ten_days_of_the_month_before(hub_runtime: Runtime) -> None:
    today = dt.date(2025, 3, 10)
    assert same_days.keep(hub_runtime.engine, today) == 2  # both practices' February 1-10
    assert same_days.keep(hub_runtime.engine, today) == 0  # kept already: nothing to do until the day changes
    report = _report(hub_runtime, today)
    march = {p["period"]: p for p in report["periods"]}["2025-03"]
    comparison = march["comparison"]
    assert comparison["comparable"] is True and comparison["basis"] == "same_days"
    assert (comparison["against"], comparison["through_day"]) == ("2025-02", 10)
    assert (comparison["first_day"], comparison["last_day"]) == ("2025-02-01", "2025-02-10")
    assert comparison["whole_prior_month"] is False
    assert set(comparison["not_compared"]) == NOT_BY_DAY
    assert {"payments", "denial_rate", "referral_attended_rate"} <= set(march["maturing"])  # the lag note stays

    east = _row(report, "rows", "2025-03", "east")
    # the month's own figures are its stored records (here already all of March's 28 days: 84 visits)
    assert east["values"]["visit_volume"] == 84 and east["values"]["gross_charges"] == "1400.00"
    compare = east["compare"]
    assert (compare["basis"], compare["period"], compare["through_day"]) == ("same_days", "2025-02", 10)
    assert compare["values"]["visit_volume"] == 15
    assert compare["values"]["no_show_rate"] == 0.25  # 5 of 20
    assert compare["values"]["gross_charges"] == "1000.00"
    assert compare["values"]["charges_per_visit"] == "66.67"  # 1000 / 15
    assert compare["values"]["days_in_ar"] is None
    west = _row(report, "rows", "2025-03", "west")["compare"]["values"]
    assert west["visit_volume"] == 10 and west["gross_charges"] is None  # no charge feed: no figure, not $0
    total = _row(report, "total", "2025-03")["compare"]["values"]
    assert total["visit_volume"] == 25
    assert total["no_show_rate"] == round(5 / 30, 6)
    assert total["charges_per_visit"] == "66.67"  # west, left out of the charge KPIs, adds no visits to it
    assert _row(report, "site_median", "2025-03")["compare"]["values"]["visit_volume"] == 12.5
    # a complete month is compared with the whole month before, as before: no same-days figures
    assert "compare" not in _row(report, "rows", "2025-02", "east")
    # any slicing reads them: by service line (west's visits have none) and by provider
    lines = compute_report(hub_runtime.engine, by="service_line,month", today=today, plugins=hub_runtime.plugins)
    by_line = {r["slice"]["service_line"]: r["compare"]["values"]["visit_volume"] for r in lines.to_dict()["rows"]
               if r["slice"]["month"] == "2025-03"}
    assert by_line == {"dermatology": 15, UNATTRIBUTED: 10}
    providers = compute_report(hub_runtime.engine, by="provider,month", today=today, plugins=hub_runtime.plugins)
    by_provider = {r["slice"]["provider"]: r["compare"]["values"]["visit_volume"]
                   for r in providers.to_dict()["rows"] if r["slice"]["month"] == "2025-03"}
    assert by_provider == {"east/DR1": 15, "west/DR1": 10, None: 0}  # None: east's charges name no provider

    # the day changes: the 10th's rows go, and a report for the 10th says they are not there to compare with
    assert same_days.keep(hub_runtime.engine, dt.date(2025, 3, 11)) == 2
    stale = _report(hub_runtime, today)
    again = {p["period"]: p for p in stale["periods"]}["2025-03"]["comparison"]
    assert again["comparable"] is False and "not computed yet" in again["reason"]
    assert _row(stale, "rows", "2025-03", "east")["compare"]["values"] is None


def test_the_31st_against_a_shorter_month_takes_the_whole_of_it(hub_runtime: Runtime) -> None:
    today = dt.date(2025, 3, 31)
    same_days.keep(hub_runtime.engine, today)
    report = _report(hub_runtime, today)
    comparison = {p["period"]: p for p in report["periods"]}["2025-03"]["comparison"]
    assert (comparison["through_day"], comparison["last_day"], comparison["whole_prior_month"]) == (
        28, "2025-02-28", True)
    east = _row(report, "rows", "2025-03", "east")["compare"]["values"]
    assert east["visit_volume"] == 42 and east["gross_charges"] == "2800.00" and east["no_show_rate"] == 0.25
    # the whole of February, as the February row itself says
    february = _row(report, "rows", "2025-02", "east")["values"]
    assert (february["visit_volume"], february["gross_charges"]) == (42, "2800.00")
    assert _row(report, "total", "2025-03")["compare"]["values"]["visit_volume"] == 70  # 42 + 28


def test_a_month_end_leaves_out_the_longer_month_s_last_days(hub_runtime: Runtime) -> None:
    """On 28 February (its last day, still in progress) February is compared with January 1-28."""
    today = dt.date(2025, 2, 28)
    same_days.keep(hub_runtime.engine, today)
    report = _report(hub_runtime, today)
    assert [r["slice"]["month"] for r in report["total"]][-1] == "2025-02"  # March's records do not open it
    comparison = {p["period"]: p for p in report["periods"]}["2025-02"]["comparison"]
    assert (comparison["last_day"], comparison["whole_prior_month"]) == ("2025-01-28", False)
    east = _row(report, "rows", "2025-02", "east")["compare"]["values"]
    assert east["visit_volume"] == 28 and east["gross_charges"] == "280.00"  # not January's 31 and $310.00
    assert _row(report, "rows", "2025-02", "west")["compare"]["values"]["visit_volume"] == 0  # none in January

    # a late January 5th visit: the refresh recomputes January and drops its same-days rows with the rest,
    # so until they are kept again a report says so rather than show the old figure
    _send(hub_runtime, "east", [_appt("LATE", "2025-01-05T11:00:00")])
    refresh_dirty(hub_runtime.engine)
    pending = {p["period"]: p for p in _report(hub_runtime, today)["periods"]}["2025-02"]["comparison"]
    assert pending["comparable"] is False
    assert same_days.keep(hub_runtime.engine, today) == 1  # east's only
    east = _row(_report(hub_runtime, today), "rows", "2025-02", "east")["compare"]["values"]
    assert east["visit_volume"] == 29


def test_bookings_ahead_are_left_out_of_the_current_side(hub_runtime: Runtime) -> None:
    """On 10 April east has, on each of days 1 to 10, two appointments (a no-show on days 3, 6 and 9: 3 of 20;
    the 10th's second is sent as 2025-04-11T03:30Z, 23:30 on the 10th in New York) and 6 more booked for days
    12 to 20. April 1-10 is compared with March 1-10 (east: 3 fulfilled a day, 30 appointments, no no-show)."""
    april = []
    for d in range(1, 11):
        second = "2025-04-11T03:30:00Z" if d == 10 else f"2025-04-{d:02d}T14:00:00"
        april += [_appt(f"A{d}a", f"2025-04-{d:02d}T09:00:00"),
                  _appt(f"A{d}b", second, "noshow" if d % 3 == 0 else "fulfilled")]
    april += [_appt(f"B{d}", f"2025-04-{d:02d}T10:00:00", "booked") for d in (12, 13, 14, 16, 18, 20)]
    _send(hub_runtime, "east", april)
    refresh_dirty(hub_runtime.engine)
    today = dt.date(2025, 4, 10)
    assert same_days.keep(hub_runtime.engine, today) == 2
    report = _report(hub_runtime, today)
    comparison = {p["period"]: p for p in report["periods"]}["2025-04"]["comparison"]
    assert comparison["comparable"] is True
    assert (comparison["current_first_day"], comparison["current_last_day"]) == ("2025-04-01", "2025-04-10")
    east = _row(report, "rows", "2025-04", "east")
    # the month's stored records, bookings ahead included: 3 no-shows of 26 scheduled
    assert east["values"]["no_show_rate"] == round(3 / 26, 6)
    compare = east["compare"]
    assert compare["current"]["no_show_rate"] == 0.15  # 3 of 20: the bookings of days 12-20 are left out
    assert compare["current"]["visit_volume"] == 17
    assert compare["values"]["no_show_rate"] == 0.0 and compare["values"]["visit_volume"] == 30
    assert compare["current"]["days_in_ar"] is None  # not by day, on either side
    total = _row(report, "total", "2025-04")["compare"]  # west has no April records, so no April row
    assert total["current"]["no_show_rate"] == 0.15 and total["current"]["visit_volume"] == 17
    assert total["values"]["visit_volume"] == 40  # east 30 + west 10
    assert _row(report, "site_median", "2025-04")["compare"]["current"]["visit_volume"] == 17  # east's row only

    # a booking made today for the 15th: the current month's cell is refreshed, and with it go its through-day
    # rows, so the comparison says it is not ready rather than show the old through-day figure
    _send(hub_runtime, "east", [_appt("B15", "2025-04-15T10:00:00", "booked")])
    refresh_dirty(hub_runtime.engine)
    pending = _report(hub_runtime, today)
    assert {p["period"]: p for p in pending["periods"]}["2025-04"]["comparison"]["comparable"] is False
    assert _row(pending, "rows", "2025-04", "east")["compare"]["current"] is None
    assert same_days.keep(hub_runtime.engine, today) == 1  # east's April only
    again = _row(_report(hub_runtime, today), "rows", "2025-04", "east")
    assert again["compare"]["current"]["no_show_rate"] == 0.15 and again["values"]["no_show_rate"] == round(3 / 27, 6)
