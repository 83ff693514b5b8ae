"""The demo fills every KPI of the catalog: an empty KPI on the demo is an input the demo forgot (costs,
cosmetic consults followed by procedures, referrals, slots, ...), and a KPI leadership cannot see work."""

from __future__ import annotations

from hub.demo.build import DemoResult
from hub.plugins import load_plugins


def test_every_kpi_of_the_catalog_has_an_mso_figure_in_the_demo(small_demo: DemoResult) -> None:
    """The catalog as the plugin manager registers it by default (built-ins and plugin KPIs): each has an
    MSO total in at least one month of the demo."""
    report = small_demo.report
    assert report is not None
    filled = {kpi for row in report["total"] for kpi, value in row["values"].items() if value is not None}
    empty = [k.id for k in load_plugins().kpis if k.id not in filled]
    assert not empty, f"catalog KPIs with no MSO figure in any month of the demo: {', '.join(empty)}"


def test_costs_are_imported_for_every_site_and_service_line(small_demo: DemoResult) -> None:
    """Finance's costs cover each service line each practice runs, mapped yet or not, every month of its history."""
    truth = small_demo.truth
    runs = {(p.slug, vt.service_line) for p in truth.practices for vt, _ in p.visit_types}
    imported = {(c["practice"], c["service_line"]) for c in truth.costs}
    assert imported == runs
    for slug in (p.slug for p in truth.practices):
        months = {r["start"][:7] for r in truth.of(slug, "appointment")}
        assert {c["month"] for c in truth.costs if c["practice"] == slug} >= months - {truth.end.isoformat()[:7]}


def test_a_feed_that_cannot_carry_denials_has_no_denial_rate_in_the_demo(small_demo: DemoResult) -> None:
    """Lakeshore's payments arrive as HL7 v2 DFT postings (no denials): no data, with the reason, and out of
    the MSO's; Milwaukee's HL7 v2 feed sends no payments (its 835s do), so it keeps its denial rate."""
    report = small_demo.report
    assert report is not None
    assert set(report["left_out"]["denial_rate"]) == {"lakeshore-derm"}
    assert "HL7 v2" in report["left_out"]["denial_rate"]["lakeshore-derm"]
    rows = [r for r in report["rows"] if r["slice"]["site"] == "lakeshore-derm"]
    assert rows and all(r["values"]["denial_rate"] is None for r in rows)
    assert any(r["values"]["payments"] not in (None, "0.00") for r in rows)  # its payments still count
    skin = [r["values"]["denial_rate"] for r in report["rows"] if r["slice"]["site"] == "mke-skin"]
    assert any(v is not None for v in skin)
