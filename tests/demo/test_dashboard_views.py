"""The live dashboard's views, in Chromium at a desktop's 1440 px and a phone's 390 px: the provider and
service-line filters (figures checked against hand-computed values of a small store), the provider view,
a linked view, and the phone layout (sections that collapse, a site table with figures, formulas on tap)."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hub.demo.build import DemoResult
from tests.demo.browser import browser_page, chart_pixels, distinct_colours, need_chromium
from tests.demo.test_served_dashboard import _key, serving

ADA, BEN = "1000000004", "2000000002"  # NPIs (valid check digits); Ada works at both practices, Ben at east only
DERM, MOHS = "medical_dermatology", "mohs_surgical"


def _months_back(n: int) -> str:
    day = dt.date.today().replace(day=1)
    for _ in range(n):
        day = (day - dt.timedelta(days=1)).replace(day=1)
    return day.strftime("%Y-%m")


# two and three months back: complete months whatever the sites' time zones say today is
MONTH, BEFORE = _months_back(2), _months_back(3)


def _records() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for site in ("east", "west"):
        out.append({"kind": "provider", "practice": site, "source_id": ADA, "npi": ADA, "family_name": "Stone",
                    "given_name": "Ada", "specialty": "dermatology"})
    out.append({"kind": "provider", "practice": "east", "source_id": BEN, "npi": BEN, "family_name": "Reyes",
                "given_name": "Ben", "specialty": "dermatology"})
    n = 0

    def visit(site: str, npi: str, month: str, day: int, status: str, amount: str | None) -> None:
        nonlocal n
        n += 1
        line, code = (DERM, "11102") if npi == ADA else (MOHS, "17311")
        out.append({"kind": "appointment", "practice": site, "source_id": f"A{n}", "patient_source_id": f"P{n}",
                    "provider_source_id": npi, "provider_npi": npi, "start": f"{month}-{day:02d}T09:00:00-05:00",
                    "status": status, "service_line": line, "duration_min": 30})
        if amount is not None:
            out.append({"kind": "charge", "practice": site, "source_id": f"C{n}", "provider_source_id": npi,
                        "patient_source_id": f"P{n}", "service_date": dt.date.fromisoformat(f"{month}-{day:02d}"),
                        "amount": Decimal(amount), "procedure_code": code, "units": 1, "service_line": line,
                        "financial_class": "commercial"})

    # the month shown: Ada 3 visits and a no-show at east, 2 visits at west; Ben 2 visits at east
    visit("east", ADA, MONTH, 3, "fulfilled", "100.00")
    visit("east", ADA, MONTH, 4, "fulfilled", "150.00")
    visit("east", ADA, MONTH, 5, "fulfilled", "50.00")
    visit("east", ADA, MONTH, 6, "noshow", None)
    visit("west", ADA, MONTH, 10, "fulfilled", "120.00")
    visit("west", ADA, MONTH, 11, "fulfilled", "80.00")
    visit("east", BEN, MONTH, 12, "fulfilled", "400.00")
    visit("east", BEN, MONTH, 13, "fulfilled", "200.00")
    # the month before: one visit of Ada at east
    visit("east", ADA, BEFORE, 7, "fulfilled", "90.00")
    return out


# what the page must show, worked out from the records above (month shown; "all" = every site)
EXPECTED = {
    ("all", ""): {"visit_volume": "7", "gross_charges": "$1,100", "no_show_rate": "12.5%"},  # 1 no-show of 8 booked
    ("all", ADA): {"visit_volume": "5", "gross_charges": "$500", "charges_per_visit": "$100",
                   "no_show_rate": "16.7%"},  # 1 of 6
    ("all", BEN): {"visit_volume": "2", "gross_charges": "$600", "charges_per_visit": "$300", "no_show_rate": "0.0%"},
    ("east", ADA): {"visit_volume": "3", "gross_charges": "$300", "charges_per_visit": "$100",
                    "no_show_rate": "25.0%"},  # 1 of 4
}


@pytest.fixture
def small_store(tmp_path: Path) -> str:
    from hub.reports import rollups
    from hub.store import canonical
    from hub.store.engine import get_engine, writer
    from hub.store.practices import add_practice

    need_chromium()
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    engine = get_engine(url)
    with writer(engine).begin() as conn:
        add_practice(conn, "east", "East Dermatology", timezone="America/New_York")
        add_practice(conn, "west", "West Skin", timezone="America/Chicago")
        items = [(r, None) for r in _records()]
        with rollups.tracking(conn, items):
            canonical.upsert_records(conn, items)
    rollups.refresh_dirty(engine)
    return url


def _names(url: str) -> dict[str, str | None]:
    from hub.reports import compute_report
    from hub.store.engine import get_engine

    report = compute_report(get_engine(url), by="provider,month").to_dict()
    return {p["id"]: p.get("name") for p in report.get("providers") or []}


def _login(page: Any, base: str, key: str, path: str = "/") -> None:
    page.goto(base + path)
    page.fill("#key", key)
    page.click("#login-form button")


def _tiles(page: Any, kpis: list[str]) -> dict[str, str]:
    return {k: page.locator(f'.tile[data-kpi="{k}"] .value').inner_text() for k in kpis}


def _showing(page: Any, by: str) -> None:
    page.wait_for_selector(f'#board[data-showing="{by}"]')


def test_at_1440_px_the_filters_show_a_provider_s_and_a_service_line_s_figures(small_store: str,
                                                                              tmp_path: Path) -> None:
    with serving(small_store, tmp_path) as (base, env):
        analyst = _key(env, "analyst")
        with browser_page(tmp_path / "profile", width=1440, height=900) as (page, problems):
            _login(page, base, analyst)
            _showing(page, "site,month")
            assert page.locator("#to").input_value() == MONTH
            expected = EXPECTED[("all", "")]
            assert _tiles(page, list(expected)) == expected
            # the provider list: one Ada across both practices (grouped by NPI), and Ben
            page.wait_for_selector(f'#provider option[value="{ADA}"]', state="attached")
            values = page.eval_on_selector_all("#provider option", "os => os.map(o => o.value)")
            assert sorted(v for v in values if v) == [ADA, BEN]
            page.select_option("#provider", ADA)
            _showing(page, "site,provider,month")
            expected = EXPECTED[("all", ADA)]
            assert _tiles(page, list(expected)) == expected
            title = page.locator("#tiles-title").inner_text()
            assert ADA in title
            if _names(small_store).get(ADA):  # the report gives the name (from the roster, else the feed's record)
                assert "Ada Stone" in title and "Ada Stone" in page.locator("#provider option:checked").inner_text()
            assert f"provider={ADA}" in page.url  # the view can be linked
            # the provider view: each provider's visits and charges, Ada's row chosen
            cells = page.eval_on_selector_all(
                "#providers tbody tr[data-provider]",
                "rows => rows.map(r => [r.dataset.provider, r.className, "
                "r.querySelector('td[data-kpi=visit_volume]').innerText, "
                "r.querySelector('td[data-kpi=gross_charges]').innerText])")
            assert sorted(cells) == [[ADA, "pick chosen", "5", "$500"], [BEN, "pick", "2", "$600"]]
            shot = tmp_path / "provider-1440.png"
            page.screenshot(path=str(shot), full_page=True)
            page.select_option("#site", "east")
            _showing(page, "site,provider,month")
            expected = EXPECTED[("east", ADA)]
            assert _tiles(page, list(expected)) == expected
            # a site chosen: a click on a tile lists the records behind the provider's figure, and no others
            page.click('.tile[data-kpi="visit_volume"]')
            page.wait_for_selector("#drill:not([hidden]) table.records")
            assert ADA in page.locator("#drill-title").inner_text()
            assert page.locator("#drill table.records tr[data-source-id]").count() == 3
            page.click("#drill-close")
            # a service line instead of a provider: east's Mohs surgery is Ben's work
            page.select_option("#provider", "")
            page.wait_for_selector(f'#line option[value="{MOHS}"]', state="attached")
            page.select_option("#line", MOHS)
            _showing(page, "site,service_line,month")
            assert _tiles(page, ["visit_volume", "gross_charges"]) == {"visit_volume": "2", "gross_charges": "$600"}
            mohs_sites = page.eval_on_selector_all(
                "#sites tbody tr[data-site]", "rows => rows.map(r => [r.dataset.site, "
                "r.querySelector('td[data-kpi=visit_volume]').innerText])")
            assert mohs_sites == [["east", "2"], ["west", "\u2014"]]  # no Mohs surgery at west: no figure
            # choosing a row of the provider view chooses the provider (the service line stays)
            page.click(f'#providers tr[data-provider="{BEN}"]')
            _showing(page, "site,provider,service_line,month")
            assert _tiles(page, ["visit_volume", "gross_charges"]) == {"visit_volume": "2", "gross_charges": "$600"}
            page.select_option("#site", "")
            page.select_option("#line", "")
            _showing(page, "site,provider,month")
            expected = EXPECTED[("all", BEN)]
            assert _tiles(page, list(expected)) == expected
            # a linked view opens on its filters
            page.goto(f"{base}/?site=east&provider={ADA}&to={MONTH}")
            _showing(page, "site,provider,month")
            assert page.locator("#provider").input_value() == ADA and page.locator("#site").input_value() == "east"
            expected = EXPECTED[("east", ADA)]
            assert _tiles(page, list(expected)) == expected
            assert problems == []
    assert distinct_colours(shot) > 50 and chart_pixels(shot) > 2_000  # the trend lines are drawn


# The phone page's height: at most 4,000 px (under five screens of a 390 x 844 phone) with the first section
# open. One tile a row made it about 11,600 px; two a row, sections closed but the first, and the charts
# behind a tap keep it near 3,000 px however many KPIs the catalog has (a section closed is one line).
PHONE_HEIGHT = 4_000


def test_at_390_px_sections_collapse_the_site_table_shows_figures_and_a_tap_shows_the_formula(
        small_demo: DemoResult, tmp_path: Path) -> None:
    with serving(small_demo.database_url, tmp_path) as (base, env):
        analyst = _key(env, "analyst")
        with browser_page(tmp_path / "profile", width=390, height=844, has_touch=True) as (page, problems):
            _login(page, base, analyst)
            _showing(page, "site,month")
            page.wait_for_selector("#providers tbody tr[data-provider]")
            height = page.evaluate("document.documentElement.scrollHeight")
            assert height <= PHONE_HEIGHT, height
            assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone
            # sections: the first open, the others closed to one line each
            groups = page.eval_on_selector_all("details.group", "ds => ds.map(d => [d.dataset.group, d.open])")
            assert len(groups) >= 4 and groups[0][1] is True and not any(o for _, o in groups[1:]), groups
            first, second = groups[0][0], groups[1][0]
            assert page.locator(f'details[data-group="{second}"] .tile').first.is_hidden()
            page.tap(f'details[data-group="{second}"] > summary')
            assert page.locator(f'details[data-group="{second}"] .tile').first.is_visible()
            page.tap(f'details[data-group="{first}"] > summary')
            assert page.locator(f'details[data-group="{first}"] .tile').first.is_hidden()
            page.tap(f'details[data-group="{first}"] > summary')
            # two tiles a row, not one
            boxes = [page.locator(f'details[data-group="{first}"] .tile').nth(i).bounding_box() for i in (0, 1)]
            assert boxes[0]["y"] == boxes[1]["y"] and boxes[1]["x"] > boxes[0]["x"]
            # a tap on a tile shows its formula (and its trend); a second tap hides it
            tile = page.locator('.tile[data-kpi="no_show_rate"]')
            assert tile.locator(".formula").count() == 0
            tile.tap()
            formula = tile.locator(".formula")
            assert formula.is_visible() and "noshow / scheduled" in formula.inner_text()
            assert tile.locator("svg.trend path.series-line").count() == 1
            tile.tap()
            assert tile.locator(".formula").count() == 0
            # the site table: names and, beside them within the phone's width, figures
            for row in page.locator("#sites tbody tr[data-site]").all():
                name, figure = row.locator("td").nth(0), row.locator("td").nth(1)
                box = figure.bounding_box()
                assert box is not None and box["x"] + box["width"] <= 390, box
                assert re.fullmatch(r"[\d,.]+%?|\$[\d,]+|[\d.]+ d|no data \(.+\)|\u2014", figure.inner_text()), \
                    figure.inner_text()
                assert name.bounding_box()["width"] <= 140  # a name wraps instead of pushing the figures away
            assert any(re.search(r"\d", r.locator("td").nth(1).inner_text())
                       for r in page.locator("#sites tbody tr[data-site]").all())
            shot = tmp_path / "phone-390.png"
            page.screenshot(path=str(shot), full_page=True)
            assert problems == []
    assert distinct_colours(shot) > 50
