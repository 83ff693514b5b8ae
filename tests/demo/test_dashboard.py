"""The dashboard page: self-contained, drawn offline in headless Chromium, and the html exporter."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from hub.reports.dashboard import render_html, write_html
from tests.demo.browser import browser_page, chart_pixels, distinct_colours

FIXTURE = Path(__file__).parent / "fixtures" / "report.json"


@pytest.fixture(scope="module")
def report() -> dict:
    return json.loads(FIXTURE.read_text())


@pytest.fixture
def page_file(tmp_path: Path, report: dict) -> Path:
    path = tmp_path / "dashboard.html"
    with path.open("wb") as out:
        write_html(report, out)
    return path


def test_the_page_fetches_nothing_from_elsewhere(report: dict) -> None:
    html = render_html(report)
    assert not re.search(r"""<(script|link|img|iframe)[^>]+(src|href)=["']?(https?:)?//""", html)
    assert "@import" not in html and "url(http" not in html
    assert "<svg" not in html.split("<script")[0]  # charts are drawn by the page's own script


def test_the_inlined_report_cannot_close_its_script_element(report: dict) -> None:
    hostile = {**report, "sites": [*report["sites"], {"slug": "x", "name": "</script><script>alert(1)</script>",
                                                      "status": "live"}]}
    html = render_html(hostile)
    assert "</script><script>alert(1)" not in html


def test_the_html_exporter_comes_from_the_built_in_plugin(report: dict) -> None:
    from hub.plugins import load_plugins

    exporter = load_plugins().exporters.get("html")
    out = io.BytesIO()
    exporter(report, out)
    assert out.getvalue().startswith(b"<!doctype html>") and b'"lakeshore-derm"' in out.getvalue()


def test_the_served_page_carries_no_figures() -> None:
    from flask import Flask

    from hub.api.dashboard import bp

    app = Flask("t")
    app.register_blueprint(bp)
    response = app.test_client().get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert 'id="report-data">null</script>' in response.get_data(as_text=True)
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_page_loads_without_errors_and_draws_every_chart(page_file: Path, report: dict, tmp_path: Path) -> None:
    with browser_page(tmp_path / "profile") as (page, problems):
        page.goto(page_file.as_uri())
        page.wait_for_selector("svg.trend path.series-line")
        kpis = [d["id"] for d in report["definitions"]]
        assert page.locator(".tile").count() == len(kpis)
        assert page.locator("svg.trend").count() == len(kpis)
        drawn = page.eval_on_selector_all(
            "svg.trend", "els => els.map(s => [s.dataset.kpi, s.querySelector('path.series-line').getAttribute('d'),"
                         " s.querySelectorAll('circle').length])")
        for kpi, path, dots in drawn:
            if kpi == "schedule_utilization":
                continue  # the MSO total has it: only one site publishes slots
            assert path.startswith("M") and path.count("L") >= 10 and dots >= 11, kpi
        rows = page.locator("#sites tbody tr").count()
        assert rows == len(report["sites"]) + 1  # and the median row
        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        assert problems == []
    assert shot.stat().st_size > 20_000
    assert distinct_colours(shot) > 50  # not a blank page
    assert chart_pixels(shot) > 2_000  # the series lines and their points are there


def test_the_page_says_how_current_the_figures_are(report: dict, tmp_path: Path) -> None:
    pages = {}
    for pending in (0, 3):
        pages[pending] = tmp_path / f"fresh-{pending}.html"
        with pages[pending].open("wb") as out:
            write_html({**report, "as_of": "2026-01-05T10:42:17Z", "pending_cells": pending}, out)
    with browser_page(tmp_path / "profile") as (page, problems):
        page.goto(pages[0].as_uri())
        page.wait_for_selector("svg.trend")
        assert page.locator("#freshness").inner_text() == "Figures as of 2026-01-05 10:42 UTC \u00b7 up to date"
        page.goto(pages[3].as_uri())
        page.wait_for_selector("svg.trend")
        assert page.locator("#freshness").inner_text() == (
            "Figures as of 2026-01-05 10:42 UTC \u00b7 3 practice-months changed since, waiting for the refresh")
        assert problems == []


def test_filters_change_the_scope_and_the_period(page_file: Path, report: dict, tmp_path: Path) -> None:
    with browser_page(tmp_path / "profile") as (page, problems):
        page.goto(page_file.as_uri())
        page.wait_for_selector("svg.trend")
        total = page.locator('.tile[data-kpi="visit_volume"] .value').inner_text()
        page.select_option("#site", "fishers-pt")
        site = page.locator('.tile[data-kpi="visit_volume"] .value').inner_text()
        last = report["rows"][-1]["slice"]["month"]
        expected = next(r["values"]["visit_volume"] for r in report["rows"]
                        if r["slice"] == {"site": "fishers-pt", "month": last})
        assert site == f"{expected:,}" and site != total
        assert "Fishers Physical Therapy" in page.locator("#tiles-title").inner_text()
        months = page.eval_on_selector_all("#from option", "os => os.map(o => o.value)")
        page.select_option("#from", months[-3])
        dots = page.eval_on_selector('svg.trend[data-kpi="visit_volume"]', "s => s.querySelectorAll('circle').length")
        assert dots == 3
        assert problems == []


def test_hub_report_kpis_writes_the_dashboard_as_one_file(small_demo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    out = tmp_path / "kpis.html"
    hub = str(Path(sys.executable).with_name("hub"))
    done = subprocess.run([hub, "report", "kpis", "--by", "site,month", "--format", "html", "--out", str(out)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HUB_DATABASE_URL": small_demo.database_url})
    assert done.returncode == 0, done.stderr
    html = out.read_text()
    assert html.startswith("<!doctype html>") and '"lakeshore-derm"' in html and '"visit_volume"' in html
    assert 'id="report-data">null' not in html  # the figures are inlined: the file needs no server
