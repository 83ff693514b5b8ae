"""Work RVUs: the RVU file, its import, and the two KPIs on a small store whose figures are known by hand."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from hub.errors import ValidationError
from hub.reports import compute_report, rollups
from hub.reports.drill import drill_down
from hub.reports.rvus import import_rvus, parse_rvus, schedules, unpriced
from hub.reports.tables import report_rvus
from hub.store import canonical
from hub.store.engine import get_engine, writer
from hub.store.practices import add_practice

ROOT = Path(__file__).resolve().parents[2]

# A hand-made table (not CMS's values): 2025 and 2026. 88305 has distinct base, -26 and -TC rows so the
# row a line takes shows in the figure; 11102 is in 2025 only; J0585 (a drug) in neither.
TABLE = """code,modifier,work_rvu,year
99213,,1.30,2025
88305,,0.90,2025
88305,26,0.75,2025
88305,TC,0.15,2025
97110,,0.45,2025
11102,,0.66,2025
99213,,1.31,2026
88305,,0.88,2026
"""


# ------------------------------------------------------------------ the file
def _error(text: str, **kw: Any) -> str:
    with pytest.raises(ValidationError) as err:
        parse_rvus(text, source="rvus.csv", **kw)
    return str(err.value)


def test_the_file_is_read_with_the_cms_names_as_well() -> None:
    rows = parse_rvus("HCPCS, MOD ,WORK RVU,Effective_Year\n99213,,1.3,2025\n88305,26,0.75,2025\n"
                      "g0008,,0.17,2025\n\n", source="rvus.csv")
    assert [(r.year, r.code, r.modifier, r.work_milli) for r in rows] == [
        (2025, "99213", "", 1300), (2025, "88305", "26", 750), (2025, "G0008", "", 170)]


def test_a_file_without_a_year_column_takes_year() -> None:
    rows = parse_rvus("code,modifier,work_rvu\n99213,,1.30\n", source="rvus.csv", year=2026)
    assert [(r.year, r.work_milli) for r in rows] == [(2026, 1300)]
    assert "the header lacks year" in _error("code,modifier,work_rvu\n99213,,1.30\n")
    assert "use one" in _error(TABLE, year=2026)


@pytest.mark.parametrize(("line", "words"), [
    ("9921,,1.30,2025", "line 3: code must be a CPT/HCPCS code of five letters or digits, not '9921'"),
    ("99213,2,1.30,2025", "line 3: modifier must be two letters or digits"),
    ("99213,,abc,2025", "line 3: work RVU is not a number: 'abc'"),
    ("99213,,-0.10,2025", "line 3: work RVU must be from 0"),
    ("99213,,1.3001,2025", "line 3: work RVU has more than three decimal places"),
    ("99213,,1.30,25", "line 3: year must be a year from 1992 to 2100, not '25'"),
    ("88305,26,0.80,2025", "line 3: code 88305 modifier 26 of 2025 is given again (first on line 2)"),
])
def test_a_bad_line_is_named_with_the_file_and_nothing_is_taken(line: str, words: str) -> None:
    message = _error(f"code,modifier,work_rvu,year\n88305,26,0.75,2025\n{line}\n")
    assert message.startswith("rvus.csv: ") and words in message and message.endswith("nothing was imported")


def test_every_bad_line_is_counted_and_an_empty_file_refused() -> None:
    assert "line 2: work RVU is not a number: 'x' (and 2 more bad line(s))" in _error(
        "code,modifier,work_rvu,year\n99213,,x,2025\n99214,,y,2025\n99215,,z,2025\n")
    assert "no RVU rows below the header" in _error("code,modifier,work_rvu,year\n")
    assert "line 1: the header lacks code, work_rvu" in _error("cpt,modifier,rvu,year\n99213,,1,2025\n")


def test_the_demo_sample_prices_every_procedure_the_demo_bills_in_each_of_its_years() -> None:
    from hub.demo import expected
    from hub.demo.build import SAMPLE_RVUS
    from hub.demo.generator import PRACTICES

    assert SAMPLE_RVUS == ROOT / expected.RVU_SAMPLE
    rows = parse_rvus(SAMPLE_RVUS.read_text(), source=str(SAMPLE_RVUS))
    billed = {code for p in PRACTICES for vt, _ in p.visit_types for code, _ in vt.procedures}
    for year in (2025, 2026):
        assert billed <= {r.code for r in rows if r.year == year and not r.modifier}, year
    # realistic values: an established visit 1.30, first-stage Mohs over 6
    by_key = {(r.year, r.code, r.modifier): r.work_milli for r in rows}
    assert by_key[(2025, "99213", "")] == 1300 and by_key[(2025, "17311", "")] > 6000


# ------------------------------------------------------------------ the store
def _charge(site: str, sid: str, day: dt.date, code: str | None, provider: str, units: int | None = 1,
            modifiers: list[str] | None = None) -> dict[str, Any]:
    return {"kind": "charge", "practice": site, "source_id": sid, "patient_source_id": f"P-{sid}",
            "provider_source_id": provider, "location_source_id": "L1", "service_date": day, "procedure_code": code,
            "modifiers": modifiers or [], "units": units, "amount": "100.00", "service_line": "dermatology"}


def _visit(site: str, sid: str, day: dt.date, provider: str) -> dict[str, Any]:
    return {"kind": "appointment", "practice": site, "source_id": sid, "patient_source_id": f"P-{sid}",
            "provider_source_id": provider, "location_source_id": "L1", "start": f"{day.isoformat()}T09:00:00-05:00",
            "duration_min": 30, "service_line": "dermatology", "status": "fulfilled"}


D = dt.date
# providers named by ten-digit ids (NPIs): the provider slice is the NPI, before and after any roster lookup
DR1, DR2, DR5 = "1000000001", "1000000002", "1000000005"
RECORDS = [
    # north, March 2025 (the 2025 schedule): DR1 1.30 + 0.75 (88305-26) = 2.05 over 2 visits;
    # DR2 0.15 (88305-TC) + 1.30 (99213-25: no -25 row, the base row) + 3 x 0.45 = 2.80 over 3 visits;
    # J0585 (no row, 100 units) counts nothing. Site: 4.85 over 5 visits = 0.97.
    _charge("north", "C1", D(2025, 3, 10), "99213", DR1),
    _charge("north", "C2", D(2025, 3, 12), "88305", DR1, modifiers=["59", "26"]),  # no -59 row: -26
    _charge("north", "C3", D(2025, 3, 15), "88305", DR2, modifiers=["tc", "26"]),  # the first: TC
    _charge("north", "C4", D(2025, 3, 20), "99213", DR2, modifiers=["25"]),
    _charge("north", "C5", D(2025, 3, 21), "97110", DR2, units=3),
    _charge("north", "C6", D(2025, 3, 22), "J0585", DR1, units=100),
    *[_visit("north", f"V1{i}", D(2025, 3, 10 + i), DR1) for i in range(2)],
    *[_visit("north", f"V2{i}", D(2025, 3, 15 + i), DR2) for i in range(3)],
    # February 2026: the 2026 schedule (99213 1.31; 11102 is not in it: unpriced though 2025 had it)
    _charge("north", "C7", D(2026, 2, 2), "99213", DR1, units=None),
    _charge("north", "C8", D(2026, 2, 3), "11102", DR2),
    # January 2027: no 2027 schedule, so 2026's; June 2024: before every schedule, unpriced
    _charge("north", "C9", D(2027, 1, 5), "99213", DR1),
    _charge("north", "C10", D(2024, 6, 1), "99213", DR1),
    # south bills only codes no row prices: no work RVU figure at all, not 0
    _charge("south", "S1", D(2025, 3, 4), "J0585", DR5, units=20),
    _charge("south", "S2", D(2025, 3, 5), None, DR5),
    _visit("south", "SV1", D(2025, 3, 4), DR5),
]


def _store(url: str, table: str = TABLE) -> sa.Engine:
    engine = get_engine(url)
    items = [(r, None) for r in RECORDS]
    with writer(engine).begin() as conn:
        for slug in ("north", "south"):
            add_practice(conn, slug, slug.title())
        import_rvus(conn, parse_rvus(table, source="table.csv"), source="table.csv")
    with writer(engine).begin() as conn, rollups.tracking(conn, items):
        canonical.upsert_records(conn, items)
    rollups.refresh_dirty(engine)
    return engine


def _values(engine: sa.Engine, by: str, **kw: Any) -> dict[tuple[Any, ...], dict[str, Any]]:
    report = compute_report(engine, by=by, kpis=["work_rvus", "work_rvus_per_visit"], **kw).to_dict()
    dims = by.split(",")
    return {tuple(r["slice"][d] for d in dims): r["values"] for r in report["rows"]}


def test_work_rvus_by_site_month_and_provider(database_url: str) -> None:
    engine = _store(database_url)
    by_month = _values(engine, "site,month", date_from="2024-06-01", date_to="2027-01-31")
    assert by_month[("north", "2025-03")] == {"work_rvus": 4.85, "work_rvus_per_visit": 0.97}
    assert by_month[("north", "2026-02")] == {"work_rvus": 1.31, "work_rvus_per_visit": None}  # no visit
    assert by_month[("north", "2027-01")]["work_rvus"] == 1.31
    assert by_month[("north", "2024-06")]["work_rvus"] == 0.0  # priced elsewhere: a true 0 here
    assert by_month[("south", "2025-03")] == {"work_rvus": None, "work_rvus_per_visit": None}
    by_provider = _values(engine, "site,provider,month", date_from="2025-03-01", date_to="2025-03-31")
    # 2.05 / 2 = 1.025: half up to 1.03; 2.80 / 3 = 0.933...
    assert by_provider[("north", DR1, "2025-03")] == {"work_rvus": 2.05, "work_rvus_per_visit": 1.03}
    assert by_provider[("north", DR2, "2025-03")] == {"work_rvus": 2.8, "work_rvus_per_visit": 0.93}
    report = compute_report(engine, by="site,month", kpis=["work_rvus"], date_from="2025-03-01",
                            date_to="2025-03-31").to_dict()
    assert report["left_out"]["work_rvus"] == {"south": "no RVU row for its procedure codes (hub rvu import)"}
    assert report["total"][0]["values"]["work_rvus"] == 4.85  # the MSO total leaves south out


def test_the_unpriced_lines_are_listed_by_code_without_patient_data(database_url: str) -> None:
    engine = _store(database_url)
    with engine.connect() as conn:
        found = unpriced(conn)
        assert unpriced(conn, date_from="2025-01-01", date_to="2025-12-31", practice="north") == [
            {"practice": "north", "year": 2025, "code": "J0585", "lines": 1, "units": 100}]
    assert found == [
        {"practice": "north", "year": 2024, "code": "99213", "lines": 1, "units": 1},
        {"practice": "north", "year": 2025, "code": "J0585", "lines": 1, "units": 100},
        {"practice": "north", "year": 2026, "code": "11102", "lines": 1, "units": 1},
        {"practice": "south", "year": 2025, "code": None, "lines": 1, "units": 1},
        {"practice": "south", "year": 2025, "code": "J0585", "lines": 1, "units": 20},
    ]


def test_importing_a_year_again_replaces_that_year_only_and_the_figures_follow(database_url: str) -> None:
    engine = _store(database_url)
    with writer(engine).begin() as conn:
        done = import_rvus(conn, parse_rvus("code,modifier,work_rvu,year\n99213,,1.40,2026\n", source="v2.csv"),
                           source="v2.csv")
    assert (done.rows, done.years, done.replaced) == (1, [2026], 2)
    with engine.connect() as conn:
        assert [(s["year"], s["rows"], s["source"]) for s in schedules(conn)] == [(2025, 6, "table.csv"),
                                                                                  (2026, 1, "v2.csv")]
        # the months with charges from 2026 on wait for the refresh; 2025's are untouched
        assert set(conn.execute(sa.text("SELECT month FROM report_dirty")).scalars()) == {"2026-02", "2027-01"}
    rollups.refresh_dirty(engine)
    by_month = _values(engine, "site,month", date_from="2025-03-01", date_to="2027-01-31")
    assert by_month[("north", "2026-02")]["work_rvus"] == 1.4
    assert by_month[("north", "2027-01")]["work_rvus"] == 1.4
    assert by_month[("north", "2025-03")]["work_rvus"] == 4.85


def test_the_drill_down_lists_the_priced_lines_and_the_visits(database_url: str) -> None:
    engine = _store(database_url)
    result = drill_down(engine, "work_rvus", site="north", month="2025-03")
    assert result.value == 4.85 and result.denominator is None
    assert {r["source_id"]: r["work_rvus"] for r in result.numerator} == {
        "C1": 1.3, "C2": 0.75, "C3": 0.15, "C4": 1.3, "C5": 1.35}
    per_visit = drill_down(engine, "work_rvus_per_visit", site="north", month="2025-03", provider=DR1)
    assert per_visit.value == 1.03
    assert sorted(r["source_id"] for r in per_visit.numerator) == ["C1", "C2"]
    assert sorted(r["source_id"] for r in per_visit.denominator or ()) == ["V10", "V11"]


# ------------------------------------------------------------------ the command line
def test_hub_rvu_import_list_unpriced_and_the_provider_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    from hub.cli import cli

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    _store(url, table="code,modifier,work_rvu,year\n99213,,1.00,2024\n")
    runner = CliRunner()
    table = tmp_path / "table.csv"
    table.write_text(TABLE)
    out = runner.invoke(cli, ["rvu", "import", str(table)])
    assert out.exit_code == 0, out.output
    assert f"imported 8 RVU row(s) for 2025, 2026 from {table}" in out.output
    assert "report rollups refreshed" in out.output
    listed = runner.invoke(cli, ["rvu", "list", "--format", "json"])
    assert [(s["year"], s["rows"]) for s in json.loads(listed.output)] == [(2024, 1), (2025, 6), (2026, 2)]
    text = runner.invoke(cli, ["rvu", "unpriced", "--practice", "south"]).output
    assert "J0585" in text and "(none)" in text and "P-S1" not in text
    report = tmp_path / "providers.csv"
    out = runner.invoke(cli, ["report", "kpis", "--by", "provider", "--from", "2025-03-01", "--to", "2025-03-31",
                              "--format", "csv", "--out", str(report)])
    assert out.exit_code == 0, out.output
    rows = list(csv.reader(report.read_text().splitlines()))
    header = rows[0]
    assert any("work_rvus" in h for h in header) and any("work_rvus_per_visit" in h for h in header)
    assert "2.05" in {cell for row in rows for cell in row}  # DR1's March 2025
    bad = tmp_path / "bad.csv"
    bad.write_text("code,modifier,work_rvu,year\n99213,,1.30,2027\n99214,,lots,2027\n")
    out = runner.invoke(cli, ["rvu", "import", str(bad)])
    assert out.exit_code == 1
    assert f"hub: error: {bad}: line 3: work RVU is not a number: 'lots'; nothing was imported" in out.output
    with get_engine(url).connect() as conn:  # not half-applied: no 2027 row
        assert conn.execute(sa.select(sa.func.count()).select_from(report_rvus)
                            .where(report_rvus.c.year == 2027)).scalar_one() == 0
