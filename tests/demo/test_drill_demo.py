"""On the demo, the drill-down of every count and ratio KPI lists exactly the records its figure counts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub.demo.build import DemoResult
from hub.reports import compute_report
from hub.reports.catalog import BUILTIN_KPIS
from hub.reports.drill import NoDrillDown, drill_down
from hub.store.engine import get_engine
from tests.demo.browser import browser_page
from tests.demo.test_served_dashboard import _key, server  # noqa: F401 (the served-dashboard fixture)

# each count and ratio KPI: (numerator measures, denominator measures) as the catalog defines them in words;
# a measure with "-" is taken off (net collection's denominator: charges less contractual adjustments)
PARTS: dict[str, tuple[tuple[str, ...], tuple[str, ...] | None]] = {
    "visit_volume": (("visits",), None),
    "new_patient_visits": (("new_visits",), None),
    "new_patient_share": (("new_visits",), ("visits",)),
    "no_show_rate": (("appts_noshow",), ("appts_scheduled",)),
    "cancellation_rate": (("appts_cancelled",), ("appts_scheduled",)),
    "late_cancellation_rate": (("appts_late_cancelled",), ("appts_scheduled",)),
    "schedule_utilization": (("booked_minutes",), ("available_minutes",)),
    "referrals_received": (("referrals_received",), None),
    "referral_scheduled_rate": (("referrals_scheduled",), ("referrals_received",)),
    "referral_attended_rate": (("referrals_attended",), ("referrals_received",)),
    "cosmetic_consult_conversion": (("consults_cosmetic_converted",), ("consults_cosmetic",)),
    "net_collection_rate": (("payments_cents",), ("charges_cents", "-contractual_cents")),
    "denial_rate": (("denied_lines",), ("remit_lines",)),
    "denial_rate_usd": (("denied_cents",), ("adjudicated_cents",)),
    **{f"payer_mix_{fc}": ((f"charges_{fc}_cents",), ("charges_cents",))
       for fc in ("commercial", "medicare", "medicaid", "self_pay", "other", "unknown")},
}
# ratios of no record list: distinct patients over a year, an A/R balance at the month's end, imported costs
NO_RECORDS = {"patient_retention": "distinct patients", "ar_over_90_share": "A/R balance",
              "margin_rate": "imported costs"}
CELLS = (("carmel-aesthetics", "2026-04"), ("mke-skin", "2026-05"), ("lakeshore-derm", "2026-05"))


def _measures(engine: Any, site: str, month: str) -> Counter[str]:
    """The month's figures as the report reads them: the site grain of the rollups, over service lines."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM report_cells WHERE grain = 'site' AND practice = :p AND "
                                    "month = :m"), {"p": site, "m": month}).mappings().all()
    total: Counter[str] = Counter()
    for row in rows:
        total.update({k: int(v) for k, v in row.items() if isinstance(v, int) and not isinstance(v, bool)})
    return total


def _share(record: dict[str, Any]) -> int:
    if "amount" in record:
        return round(float(record["amount"]) * 100)
    return int(record.get("minutes", 1))


def _check(demo: DemoResult) -> None:
    engine = get_engine(demo.database_url)
    kinds = {k.id: k.unit for k in BUILTIN_KPIS}
    counted = {k for k, unit in kinds.items() if unit in ("count", "ratio")}
    assert counted == set(PARTS) | set(NO_RECORDS)  # every count and ratio KPI of the catalog is checked
    checked = 0
    for site, month in CELLS:
        figures = _measures(engine, site, month)
        report = compute_report(engine, by="site,month", date_from=f"{month}-01", date_to=f"{month}-01")
        values = next(r["values"] for r in report.to_dict()["rows"] if r["slice"]["site"] == site)
        for kpi, (num, den) in PARTS.items():
            result = drill_down(engine, kpi, site=site, month=month)
            assert result.value == values[kpi], (site, month, kpi)
            for parts, listed in ((num, result.numerator), (den, result.denominator)):
                if parts is None:
                    assert listed is None
                    continue
                assert listed is not None
                by_measure: dict[str, list[dict[str, Any]]] = {}
                for record in listed:
                    by_measure.setdefault(record["measure"], []).append(record)
                    assert record["messages"], (kpi, record["source_id"])  # every record has its source messages
                for part in parts:
                    measure, sign = part.lstrip("-"), -1 if part.startswith("-") else 1
                    records = by_measure.get(measure, [])
                    if measure in ("booked_minutes", "available_minutes") or measure.endswith("_cents"):
                        assert sum(_share(r) for r in records) == sign * figures[measure], (site, kpi, measure)
                    else:
                        assert len(records) == figures[measure], (site, month, kpi, measure)
                    checked += 1
        for kpi, what in NO_RECORDS.items():
            with pytest.raises(NoDrillDown, match=what):
                drill_down(engine, kpi, site=site, month=month)
    assert checked > 80


def test_drill_down_counts_equal_the_figures_on_sqlite(small_demo: DemoResult) -> None:
    _check(small_demo)


def test_drill_down_counts_equal_the_figures_on_postgresql(small_demo_postgres: DemoResult) -> None:
    _check(small_demo_postgres)


def test_a_click_on_a_table_cell_opens_its_records_in_the_live_dashboard(
        server: tuple[str, dict[str, str]], small_demo: DemoResult, tmp_path: Path) -> None:  # noqa: F811
    base, env = server
    analyst = _key(env, "analyst")
    engine = get_engine(small_demo.database_url)
    with browser_page(tmp_path / "profile") as (page, problems):
        page.goto(base + "/")
        page.fill("#key", analyst)
        page.click("#login-form button")
        page.wait_for_selector("#sites td.drillable")
        month = page.evaluate("window.hubDashboard.state.to")
        page.click("#sites tr[data-site='lakeshore-derm'] td[data-kpi='no_show_rate']")
        page.wait_for_selector("#drill:not([hidden]) table.records")
        tables = page.locator("#drill table.records")
        assert tables.count() == 2  # numerator and denominator
        figures = _measures(engine, "lakeshore-derm", month)
        assert tables.nth(0).locator("tr[data-source-id]").count() == figures["appts_noshow"]
        assert tables.nth(1).locator("tr[data-source-id]").count() == figures["appts_scheduled"]
        links = page.eval_on_selector_all("#drill a", "links => links.map(a => a.getAttribute('href'))")
        assert links and all(link.startswith("/console/messages/") for link in links)
        page.click("#drill-close")
        assert page.locator("#drill").is_hidden()
        assert problems == []
    with engine.connect() as conn:
        outcome = conn.execute(sa.text("SELECT outcome FROM audit_log WHERE action = 'reports.drill' "
                                       "ORDER BY id DESC")).scalar()
    assert outcome == f"{figures['appts_noshow'] + figures['appts_scheduled']} records"
