"""Providers in the CSV and XLSX reports read as people: their name beside their key; and the drill-down
finds a provider by the report's key or by the practice's own id, whichever the practice uses.

A hand-built MSO of two sites in March 2024, one fulfilled appointment each (a visit):
- north A1 by DR7, whose provider record carries NPI 1234567893: the roster names her Ada Stone;
- south B1 by AS1, an appointment naming the same NPI: the same person, so 2 visits for 1234567893;
- north A2 by DR8: no provider record, no NPI: key north/DR8, no name known;
- south B2 by K2: a provider record without an NPI, named Ben Okafor by the feed: key south/K2;
- north A3 names no provider at all.
And a charge of 120.00 at north by DR7 (no NPI on the line: her key comes from her provider record).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from hub.cli import cli
from hub.mapping.vocabulary import clear_cache
from hub.reports import rollups
from hub.reports.drill import drill_down
from hub.reports.exporters import provider_label
from hub.store import canonical
from hub.store.engine import get_engine, writer
from hub.store.practices import add_practice

NPI = "1234567893"  # synthetic, with a valid check digit
MONTH = "2024-03"
ADA = f"Ada Stone (NPI {NPI})"
EXPECTED = {ADA: 2, "north/DR8": 1, "Ben Okafor (south/K2)": 1, "no provider recorded": 1}


@pytest.fixture
def vocabulary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "mso"
    folder.mkdir()
    (folder / "providers.yaml").write_text(f'providers:\n  "{NPI}": {{family_name: Stone, given_name: Ada}}\n')
    monkeypatch.setenv("HUB_MSO_VOCABULARIES", str(folder))
    clear_cache()
    yield folder
    clear_cache()


def _visit(practice: str, source_id: str, provider: str | None, **extra: Any) -> dict[str, Any]:
    return {"kind": "appointment", "practice": practice, "source_id": source_id, "patient_source_id": f"P-{source_id}",
            "provider_source_id": provider, "start": f"{MONTH}-12T09:00:00-05:00", "status": "fulfilled",
            "duration_min": 30, **extra}


@pytest.fixture
def store(vocabulary: Path) -> Any:
    engine = get_engine(os.environ["HUB_DATABASE_URL"])
    records = [
        {"kind": "provider", "practice": "north", "source_id": "DR7", "npi": NPI, "family_name": "STONE"},
        _visit("north", "A1", "DR7"),
        _visit("south", "B1", "AS1", provider_npi=NPI),
        _visit("north", "A2", "DR8"),
        {"kind": "provider", "practice": "south", "source_id": "K2", "family_name": "Okafor", "given_name": "Ben"},
        _visit("south", "B2", "K2"),
        _visit("north", "A3", None),
        {"kind": "charge", "practice": "north", "source_id": "CH1", "patient_source_id": "P-A1",
         "provider_source_id": "DR7", "service_date": dt.date(2024, 3, 12), "amount": Decimal("120.00")},
    ]
    with writer(engine).begin() as conn:
        add_practice(conn, "north", "North")
        add_practice(conn, "south", "South")
        items = [(r, None) for r in records]
        with rollups.tracking(conn, items):
            canonical.upsert_records(conn, items)
    rollups.refresh_dirty(engine)
    return engine


def _kpis(*args: str) -> str:
    done = CliRunner().invoke(cli, ["report", "kpis", "--from", f"{MONTH}-01", "--to", f"{MONTH}-31", *args])
    assert done.exit_code == 0, done.output
    return done.stdout


def test_csv_labels_each_provider_with_name_and_key(store: Any) -> None:
    lines = list(csv.DictReader(io.StringIO(_kpis("--by", "provider,month", "--format", "csv"))))
    rows = [r for r in lines if r["section"] == "provider"]
    assert {r["provider"]: int(r["Visit volume (visit_volume)"]) for r in rows} == EXPECTED
    assert {r["month"] for r in rows} == {MONTH}
    # the MSO total by provider labels the same way
    assert {r["provider"] for r in lines if r["section"] == "total"} == set(EXPECTED)


def test_xlsx_labels_each_provider_with_name_and_key(store: Any, tmp_path: Path) -> None:
    out = tmp_path / "kpis.xlsx"
    _kpis("--by", "site,provider", "--format", "xlsx", "--out", str(out))
    sheet = load_workbook(out)["by site x provider"]
    head = [c.value for c in sheet[1]]
    assert head[:2] == ["site", "provider"] and "Visit volume (visit_volume)" in head
    volume = head.index("Visit volume (visit_volume)")
    found = {(r[0], r[1]): r[volume] for r in sheet.iter_rows(min_row=2, values_only=True)}
    assert found == {("north", ADA): 1, ("south", ADA): 1, ("north", "north/DR8"): 1,
                     ("south", "Ben Okafor (south/K2)"): 1, ("north", "no provider recorded"): 1}
    median = load_workbook(out)["site median"]
    assert {r[0] for r in median.iter_rows(min_row=2, values_only=True)} == set(EXPECTED)


def test_json_keeps_the_bare_keys_and_lists_the_names(store: Any) -> None:
    data = json.loads(_kpis("--by", "provider"))
    assert {r["slice"]["provider"] for r in data["rows"]} == {NPI, "north/DR8", "south/K2", None}
    assert {p["id"]: p["name"] for p in data["providers"]} == {NPI: "Ada Stone", "north/DR8": None,
                                                              "south/K2": "Ben Okafor"}


@pytest.mark.parametrize("provider", [NPI, "DR7"])
def test_drill_finds_a_provider_by_npi_or_by_the_practices_own_id(store: Any, provider: str) -> None:
    # north knows her as DR7; her NPI is only on north's provider record, never on the appointment
    result = drill_down(store, "visit_volume", site="north", month=MONTH, provider=provider)
    assert [r["source_id"] for r in result.numerator] == ["A1"]
    assert result.value == 1
    shown = drill_down(store, "no_show_rate", site="north", month=MONTH, provider=provider)
    assert shown.denominator is not None and [r["source_id"] for r in shown.denominator] == ["A1"]
    charges = drill_down(store, "gross_charges", site="north", month=MONTH, provider=provider)
    assert charges.value == "120.00" and [r["source_id"] for r in charges.numerator] == ["CH1"]


def test_drill_by_the_cli_takes_the_npi_of_a_practice_that_uses_local_ids(store: Any) -> None:
    done = CliRunner().invoke(cli, ["report", "drill", "visit_volume", "--site", "north", "--month", MONTH,
                                    "--provider", NPI, "--format", "json"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["value"] == 1 and [r["source_id"] for r in data["numerator"]] == ["A1"]
    # a provider key from another site is not north's: nothing at north
    other = drill_down(store, "visit_volume", site="north", month=MONTH, provider="south/K2")
    assert other.numerator == [] and other.value == 0


def test_a_label_is_never_a_spreadsheet_formula() -> None:
    assert provider_label(NPI, None) == f"NPI {NPI}"
    assert provider_label("north/DR8", "=HYPERLINK(\"x\")") == "'=HYPERLINK(\"x\") (north/DR8)"
    assert provider_label(None, None) == provider_label("", None) == "no provider recorded"
