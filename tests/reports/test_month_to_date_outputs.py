"""The month in progress's same-days comparison where a change is shown: the dashboard's tiles, the XLSX and the
packet (the data of test_month_to_date: on 10 March, March so far against February 1-10)."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest

from hub.plugins import load_plugins
from hub.reports import compute_report, same_days
from hub.reports.engine import Report
from hub.reports.rollups import refresh_dirty
from hub.runtime import Runtime
from hub.store.engine import writer
from hub.store.practices import add_practice
from tests.reports.test_month_to_date import _east, _send, _west
from tests.support.json_records import plugin

TODAY = dt.date(2025, 3, 10)


@pytest.fixture
def report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Report:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    runtime = Runtime.create(database_url=url, plugins=load_plugins(extra=[plugin]), dispatcher="inline")
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "east", "East", timezone="America/New_York")
        add_practice(conn, "west", "West", timezone="America/Los_Angeles")
    _send(runtime, "east", _east())
    _send(runtime, "west", _west())
    refresh_dirty(runtime.engine)
    same_days.keep(runtime.engine, TODAY)
    return compute_report(runtime.engine, by="site,month", today=TODAY, plugins=runtime.plugins)


def test_the_xlsx_holds_the_same_days_figures(report: Report) -> None:
    from openpyxl import load_workbook

    out = io.BytesIO()
    report_xlsx = load_plugins().exporters.get("xlsx")
    report_xlsx(report, out)
    book = load_workbook(io.BytesIO(out.getvalue()))
    periods = {row[0]: row for row in book["periods"].iter_rows(min_row=2, values_only=True)}
    assert "2025-02-01 to 2025-02-10" in periods["2025-03"][4] and "days_in_ar" in periods["2025-03"][4]
    sheet = book["same days"]
    head = [c.value for c in sheet[1]]
    rows = [dict(zip(head, row, strict=True)) for row in sheet.iter_rows(min_row=2, values_only=True)]
    east = next(r for r in rows if r["site"] == "east")
    assert (east["month"], east["compared with"], east["last day"]) == ("2025-03", "2025-02", "2025-02-10")
    assert east["Visit volume (visit_volume)"] == 15 and east["side"] == "same days of the month before"
    to_date = next(r for r in rows if r["site"] == "east" and r["side"] == "month to date")
    assert (to_date["first day"], to_date["last day"], to_date["Visit volume (visit_volume)"]) == (
        "2025-03-01", "2025-03-10", 30)  # March 1-10 only: 3 a day
    total = next(r for r in rows if r["section"] == "MSO total")
    assert total["Visit volume (visit_volume)"] == 25
    assert "2025-03-01 to 2025-03-10, bookings ahead left out" in periods["2025-03"][4]


def test_the_packet_of_the_month_in_progress_compares_the_same_days(report: Report) -> None:
    from hub.reports.packet import render_html

    page = render_html(report, "2025-03", [])
    assert "change against the same days of February 2025 (1\u201310; March 2025 to date)" in page
    # visit volume, MSO total: March 1-10's 30 + 10 (not the whole stored March's 84 + 28) against February
    # 1-10's 15 + 10
    tile = page.split('data-kpi="visit_volume"', 1)[1].split("</div></div>", 1)[0]
    assert "+60.0%" in tile and ">40<" in tile
    ar = page.split('data-kpi="patient_retention"', 1)[1].split("</div></div>", 1)[0]
    assert "not comparable by day" in ar


def test_the_dashboard_tiles_say_what_they_are_compared_with(report: Report, tmp_path: Path) -> None:
    from hub.reports.dashboard import write_html
    from tests.demo.browser import browser_page

    page_file = tmp_path / "dashboard.html"
    with page_file.open("wb") as out:
        write_html(report, out)
    with browser_page(tmp_path / "profile") as (page, problems):
        page.goto(page_file.as_uri())
        page.wait_for_selector("svg.trend")
        page.select_option("#to", "2025-03")
        assert "change against the same days of Feb 25, 1\u201310" in page.locator("#tiles-title").inner_text()
        tile = page.locator('.tile[data-kpi="visit_volume"]').inner_text()
        assert "+60.0%" in tile and "vs same days of Feb 25" in tile  # 40 (March 1-10) against 25
        assert "not comparable by day" in page.locator('.tile[data-kpi="patient_retention"] .change').inner_text()
        page.select_option("#site", "east")  # March 1-10's 30 against 15
        assert "+100.0%" in page.locator('.tile[data-kpi="visit_volume"] .change').inner_text()
        assert problems == []


def test_a_packet_tile_of_a_maturing_kpi_says_so(report: Report) -> None:
    """A KPI whose inputs lag (payments, denials, referrals attended) reads low for a recent month: its tile
    says it is still maturing, as the dashboard's does, and no other tile does."""
    from hub.reports.packet import MATURING, render_html

    data = report.to_dict()
    period = next(p for p in data["periods"] if p["period"] == "2025-03")
    period["maturing"] = ["visit_volume"]
    page = render_html(data, "2025-03", [])
    visits = page.split('data-kpi="visit_volume"', 1)[1].split('<div class="tile"', 1)[0]
    no_shows = page.split('data-kpi="no_show_rate"', 1)[1].split('<div class="tile"', 1)[0]
    assert MATURING in visits and MATURING not in no_shows
    assert page.count(MATURING) == 1  # the one tile of visit volume
