"""docs/reports.md lists every KPI of the catalog, exactly as the catalog defines it."""

from hub.reports.catalog import BUILTIN_KPIS
from hub.reports.docs import kpi_table, render
from tests.conftest import ROOT


def test_kpi_table_matches_the_catalog() -> None:
    text = (ROOT / "docs" / "reports.md").read_text()
    assert kpi_table(BUILTIN_KPIS) in text, "docs/reports.md is stale: run python -m hub.reports.docs"
    assert render(text, BUILTIN_KPIS) == text


def test_every_kpi_explains_itself() -> None:
    ids = [k.id for k in BUILTIN_KPIS]
    assert len(ids) == len(set(ids))
    for k in BUILTIN_KPIS:
        d = k.definition()
        assert d["name"] and d["numerator"] and d["formula"] and d["source_kinds"], k.id
        assert d["unit"] in ("count", "ratio", "usd", "days", "minutes", "rvu")
        if d["unit"] == "ratio":
            assert d["denominator"], f"{k.id}: a ratio names its denominator"
