"""Honest periods and empty inputs: the current month is marked in progress, bookings ahead never set the
period, and a site whose feeds do not carry a KPI's inputs has no figure (not zero) and stays out of the MSO's."""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from hub.reports import compute_report, rollups
from hub.reports.periods import today_at_sites
from hub.store import canonical
from hub.store.engine import get_engine, writer
from hub.store.practices import add_practice

TODAY = dt.date(2025, 3, 5)  # March 2025 is in progress; April holds only bookings


def _appt(site: str, i: int, day: str, status: str = "fulfilled") -> dict[str, Any]:
    return {"kind": "appointment", "practice": site, "source_id": f"A{i}", "patient_source_id": f"P{i}",
            "start": f"{day}T09:00:00-05:00", "status": status, "service_line": "dermatology", "duration_min": 30}


def _charge(site: str, i: int, day: str, amount: str) -> dict[str, Any]:
    return {"kind": "charge", "practice": site, "source_id": f"C{i}", "service_date": dt.date.fromisoformat(day),
            "amount": Decimal(amount), "service_line": "dermatology", "financial_class": "commercial"}


def _seed() -> sa.Engine:
    engine = get_engine(os.environ["HUB_DATABASE_URL"])
    records = [
        # east: visits and charges; two bookings next month (the 10th and the 14th)
        _appt("east", 1, "2025-01-10"), _appt("east", 2, "2025-02-10"), _appt("east", 3, "2025-02-11"),
        _appt("east", 4, "2025-03-03"), _appt("east", 5, "2025-04-10", "booked"),
        _appt("east", 6, "2025-04-14", "booked"),
        _charge("east", 1, "2025-01-10", "200.00"), _charge("east", 2, "2025-02-10", "300.00"),
        _charge("east", 3, "2025-02-11", "100.00"), _charge("east", 4, "2025-03-03", "50.00"),
        {"kind": "remittance", "practice": "east", "source_id": "R1", "charge_source_id": "C1",
         "paid_amount": Decimal("150.00"), "adjustment_amount": Decimal("50.00"), "paid_on": dt.date(2025, 2, 1),
         "adjustments": [{"group": "CO", "reason": "45", "amount": "50.00"}], "denied": False},
        # west: visits but no charge feed at all
        _appt("west", 11, "2025-01-12"), _appt("west", 12, "2025-02-12"), _appt("west", 13, "2025-02-13"),
        _appt("west", 14, "2025-02-14"),
    ]
    with writer(engine).begin() as conn:
        add_practice(conn, "east", "East Dermatology", timezone="America/New_York")
        add_practice(conn, "west", "West Skin", timezone="America/Los_Angeles")
        items = [(r, None) for r in records]
        with rollups.tracking(conn, items):
            canonical.upsert_records(conn, items)
    rollups.refresh_dirty(engine)
    return engine


def test_bookings_ahead_never_set_the_period_and_the_current_month_is_marked() -> None:
    engine = _seed()
    report = compute_report(engine, by="site,month", today=TODAY).to_dict()
    months = [r["slice"]["month"] for r in report["total"]]
    assert months == ["2025-01", "2025-02", "2025-03"]  # April's two bookings do not open a zero month
    assert report["to"] == "2025-03-31" and report["today"] == "2025-03-05"
    assert report["default_period"] == "2025-02"  # the last complete month
    periods = {p["period"]: p for p in report["periods"]}
    assert [periods[m]["complete"] for m in months] == [True, True, False]
    march = periods["2025-03"]
    assert march["state"] == "in_progress" and march["through"] == "2025-03-05"
    # compared with the same days of February, whose figures the refresh has not kept for this day
    assert march["comparison"]["comparable"] is False and march["comparison"]["basis"] == "same_days"
    assert periods["2025-02"]["comparison"]["comparable"] is True
    assert all(r["complete"] is False for r in report["rows"] + report["total"] if r["slice"]["month"] == "2025-03")
    assert all(r["complete"] is True for r in report["rows"] if r["slice"]["month"] == "2025-02")
    # February ended 5 days before: payments and denials (remittances arrive for ~90 days) are still maturing,
    # visit volume is not; January (33 days) still matures for payments but referral outcomes only for 60 days
    assert {"payments", "denial_rate", "net_collection_rate"} <= set(periods["2025-02"]["maturing"])
    assert "visit_volume" not in periods["2025-02"]["maturing"]
    assert "referral_attended_rate" in periods["2025-01"]["maturing"]
    east_march = next(r for r in report["rows"] if r["slice"] == {"site": "east", "month": "2025-03"})
    assert east_march["values"]["visit_volume"] == 1  # month to date: the 3rd


def test_a_future_month_only_when_asked_and_marked_future() -> None:
    engine = _seed()
    report = compute_report(engine, by="month", date_to="2025-04-30", today=TODAY).to_dict()
    periods = {p["period"]: p for p in report["periods"]}
    assert periods["2025-04"]["state"] == "future" and periods["2025-04"]["complete"] is False
    assert report["default_period"] == "2025-02"
    # with everything complete (a later today) the default is the last month with figures
    later = compute_report(engine, by="month", today=dt.date(2025, 6, 1)).to_dict()
    assert [p["period"] for p in later["periods"]][-1] == "2025-04" and later["default_period"] == "2025-04"


def test_today_is_the_earliest_date_among_the_sites_zones() -> None:
    engine = _seed()  # New York and Los Angeles
    with engine.connect() as conn:
        # 05:00 UTC on 1 March: already March in New York (midnight), still 28 February in Los Angeles
        assert today_at_sites(conn, dt.datetime(2025, 3, 1, 5, 0, tzinfo=dt.UTC)) == dt.date(2025, 2, 28)
        assert today_at_sites(conn, dt.datetime(2025, 3, 1, 8, 0, tzinfo=dt.UTC)) == dt.date(2025, 3, 1)


def test_a_site_without_a_charge_feed_has_no_charge_figures_and_stays_out_of_the_mso() -> None:
    engine = _seed()
    report = compute_report(engine, by="site,month", today=TODAY).to_dict()
    rows = {(r["slice"]["site"], r["slice"]["month"]): r["values"] for r in report["rows"]}
    # February: east 2 visits and $400.00 of charges; west 3 visits and no charge feed at all
    assert rows[("east", "2025-02")]["charges_per_visit"] == "200.00"
    west = rows[("west", "2025-02")]
    assert west["visit_volume"] == 3
    assert west["gross_charges"] is None and west["charges_per_visit"] is None  # not $0 and $0.00
    assert report["left_out"]["gross_charges"] == {"west": "no charge feed"}
    assert report["left_out"]["charges_per_visit"] == {"west": "no charge feed"}
    assert "visit_volume" not in report["left_out"]
    total = {r["slice"]["month"]: r["values"] for r in report["total"]}["2025-02"]
    assert total["visit_volume"] == 5
    assert total["charges_per_visit"] == "200.00"  # 400 / east's 2 visits, not 400 / 5 = 80.00
    median = {r["slice"]["month"]: r["values"] for r in report["site_median"]}["2025-02"]
    assert median["charges_per_visit"] == "200.00" and median["visit_volume"] == 2.5
    # west sends no remittances: its denial rate is no data (with its reason), never 0.0 %; east's one
    # remittance line (January's charge, paid) makes January 0.0 and leaves February without adjudicated lines
    assert rows[("west", "2025-01")]["denial_rate"] is None and rows[("east", "2025-01")]["denial_rate"] == 0.0
    assert rows[("east", "2025-02")]["denial_rate"] is None and total["denial_rate"] is None
    assert report["left_out"]["denial_rate"] == {"west": "no remittance feed, no charge feed"}  # source kinds' order
    assert rows[("east", "2025-01")]["payments"] == "150.00" and rows[("west", "2025-01")]["payments"] is None
    # the same without a site dimension: the service line's charges per visit leaves west's visits out
    lines = compute_report(engine, by="service_line,month", today=TODAY).to_dict()
    feb = next(r for r in lines["rows"] if r["slice"] == {"service_line": "dermatology", "month": "2025-02"})
    assert feb["values"]["visit_volume"] == 5 and feb["values"]["charges_per_visit"] == "200.00"


def test_the_dashboard_opens_on_the_last_complete_month_and_says_what_is_missing(tmp_path: Any) -> None:
    from hub.reports.dashboard import write_html
    from tests.demo.browser import browser_page

    engine = _seed()
    page_file = tmp_path / "dashboard.html"
    with page_file.open("wb") as out:
        write_html(compute_report(engine, by="site,month", today=TODAY), out)
    with browser_page(tmp_path / "profile") as (page, problems):
        page.goto(page_file.as_uri())
        page.wait_for_selector("svg.trend")
        assert page.locator("#to").input_value() == "2025-02"  # not March (in progress), never April
        assert page.eval_on_selector_all("#to option", "os => os.map(o => o.value)") == ["2025-01", "2025-02",
                                                                                          "2025-03"]
        assert "change against Jan 25" in page.locator("#tiles-title").inner_text()
        assert "still maturing" in page.locator('.tile[data-kpi="payments"]').inner_text()
        page.select_option("#site", "west")
        tile = page.locator('.tile[data-kpi="gross_charges"]').inner_text()
        assert "no data" in tile and "no charge feed" in tile and "$0" not in tile
        page.select_option("#site", "")  # the MSO total: east has a visit on 3 March
        page.select_option("#to", "2025-03")
        title = page.locator("#tiles-title").inner_text()
        assert "month to date, through 2025-03-05" in title and "change against" not in title
        assert "not comparable yet" in page.locator('.tile[data-kpi="visit_volume"] .change').inner_text()
        chart = 'svg.trend[data-kpi="visit_volume"]'
        assert page.eval_on_selector(chart, "s => s.querySelectorAll('circle.partial').length") == 1
        cell = page.locator('#sites tr[data-site="west"] td.nodata').first.inner_text()
        assert cell.startswith("no data (")
        assert problems == []
