"""Service-line attribution: every charge counts under one service line, so the lines add up to the total.

A hand-built MSO of two sites, where each charge reaches its service line a different way (its own,
its encounter's, that encounter's appointment's, the appointment its visit number names, its
procedure code, none). The expected figures are worked out by hand in the comments.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub.errors import MappingError
from hub.mapping.vocabulary import clear_cache, load_vocabulary
from hub.reports import compute_report, rollups
from hub.reports.attribution import UNATTRIBUTED
from hub.reports.catalog import BUILTIN_KPIS
from hub.reports.costs import import_costs
from hub.reports.drill import drill_down
from hub.store import canonical
from hub.store.engine import get_engine, writer
from hub.store.practices import add_practice

SERVICE_LINES = """service_lines:
  medical_dermatology: {name: Medical dermatology}
  mohs_surgical: {name: Mohs}
  cosmetic_aesthetics: {name: Cosmetic}
  physical_therapy: {name: Physical therapy}
"""
PROCEDURES = """procedure_service_lines:
  "17311": {service_line: mohs_surgical}
  "97110": {service_line: physical_therapy}
"""

# per-visit money KPIs: (the KPI of their numerator, the KPI of their denominator)
PER_UNIT = {"charges_per_visit": ("gross_charges", "visit_volume"),
            "payments_per_visit": ("payments", "visit_volume")}


@pytest.fixture
def vocabulary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "mso"
    folder.mkdir()
    (folder / "service_lines.yaml").write_text(SERVICE_LINES)
    (folder / "procedure_service_lines.yaml").write_text(PROCEDURES)
    monkeypatch.setenv("HUB_MSO_VOCABULARIES", str(folder))
    clear_cache()
    return folder


def _charge(practice: str, source_id: str, amount: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "charge", "practice": practice, "source_id": source_id, "patient_source_id": "P1",
            "provider_source_id": "DR1", "service_date": dt.date(2024, 3, 12), "amount": Decimal(amount), **extra}


def _remit(practice: str, charge: str, paid: str, adjusted: str = "0") -> dict[str, Any]:
    return {"kind": "remittance", "practice": practice, "source_id": f"R-{charge}", "charge_source_id": charge,
            "paid_amount": Decimal(paid), "adjustment_amount": Decimal(adjusted), "paid_on": dt.date(2024, 4, 2)}


def _visit(kind: str, practice: str, source_id: str, **extra: Any) -> dict[str, Any]:
    status = "fulfilled" if kind == "appointment" else "finished"
    return {"kind": kind, "practice": practice, "source_id": source_id, "patient_source_id": "P1",
            "provider_source_id": "DR1", "start": "2024-03-12T09:00:00-05:00", "status": status, **extra}


def records() -> list[dict[str, Any]]:
    a, b = "alpha", "beta"
    return [
        # alpha: visits: A3 (cosmetic), A4 (physical therapy), E2 (mohs), E7 (no line); E3 is A3's, not a visit again
        _visit("appointment", a, "A3", service_line="cosmetic_aesthetics"),
        _visit("appointment", a, "A4", service_line="physical_therapy"),
        _visit("encounter", a, "E2", service_line="mohs_surgical"),
        _visit("encounter", a, "E3", appointment_source_id="A3"),
        _visit("encounter", a, "E7"),
        _charge(a, "C1", "100.00", service_line="medical_dermatology", encounter_source_id="E2"),  # its own line
        _charge(a, "C2", "900.00", encounter_source_id="E2"),  # its encounter's: mohs
        _charge(a, "C3", "300.00", encounter_source_id="E3"),  # its encounter's appointment's: cosmetic
        _charge(a, "C4", "75.00", encounter_source_id="A4"),  # the appointment its visit number names: PT
        _charge(a, "C5", "500.00", procedure_code="17311"),  # its procedure code: mohs
        _charge(a, "C6", "110.00", procedure_code="99213"),  # nothing: unattributed
        _charge(a, "C7", "70.00", encounter_source_id="E7", procedure_code=" 97110 "),  # line-less encounter: PT
        _remit(a, "C1", "60.00", "40.00"), _remit(a, "C2", "500.00", "100.00"), _remit(a, "C3", "300.00"),
        _remit(a, "C4", "30.00"), _remit(a, "C5", "250.00"), _remit(a, "C6", "50.00", "20.00"),
        # beta: one medical dermatology visit and charge, and a charge no one can place
        _visit("appointment", b, "B-A1", service_line="medical_dermatology"),
        _charge(b, "B1", "200.00", encounter_source_id="B-A1"),
        _charge(b, "B2", "40.00", procedure_code="11111"),
        _remit(b, "B1", "120.00"),
    ]


# by service line, both sites: (gross charges, payments, adjustments, costs, margin, visits)
EXPECTED = {
    "medical_dermatology": ("300.00", "180.00", "40.00", "20.00", "40.00", 1),  # margin: alpha's 60 - 20
    "mohs_surgical": ("1400.00", "750.00", "100.00", "100.00", "650.00", 1),
    "cosmetic_aesthetics": ("300.00", "300.00", "0.00", None, None, 1),
    "physical_therapy": ("145.00", "30.00", "0.00", None, None, 1),
    UNATTRIBUTED: ("150.00", "50.00", "20.00", None, None, 1),
}
TOTAL = ("2295.00", "1310.00", "160.00", "120.00", "690.00", 5)


def _load(url: str) -> sa.Engine:
    engine = get_engine(url)
    with writer(engine).begin() as conn:
        for slug in ("alpha", "beta"):
            add_practice(conn, slug, slug.title())
    items = [(r, None) for r in records()]
    with writer(engine).begin() as conn, rollups.tracking(conn, items):
        canonical.upsert_records(conn, items)
    with writer(engine).begin() as conn:
        import_costs(conn, [{"practice": "alpha", "service_line": "medical_dermatology", "month": "2024-03",
                             "cost_cents": 2000},
                            {"practice": "alpha", "service_line": "mohs_surgical", "month": "2024-03",
                             "cost_cents": 10000}], source="costs.csv")
    rollups.refresh_dirty(engine)
    return engine


@pytest.fixture
def loaded(database_url: str, vocabulary: Path) -> sa.Engine:
    return _load(database_url)


def _money_kpis() -> list[Any]:
    return [k for k in BUILTIN_KPIS if k.unit == "usd"]


def test_every_money_kpi_adds_up_over_service_lines_to_the_mso_total(loaded: sa.Engine) -> None:
    report = compute_report(loaded, by="service_line,month").to_dict()
    lines = {r["slice"]["service_line"]: r["values"] for r in report["rows"]}
    (total,) = [t["values"] for t in compute_report(loaded, by="month").to_dict()["total"]]
    assert set(lines) == set(EXPECTED)  # the unattributed bucket is a line of its own, named so
    money = _money_kpis()
    assert {"gross_charges", "payments", "adjustments", "costs", "margin"} <= {k.id for k in money}
    for kpi in money:
        if kpi.denominator is None:  # a sum: the lines' figures add up to the total
            assert total[kpi.id] is not None, kpi.id
            found = sum((Decimal(v[kpi.id]) for v in lines.values() if v[kpi.id] is not None), Decimal(0))
            assert found == Decimal(total[kpi.id]), kpi.id
        else:  # per unit: numerators and denominators add up, and each figure is its own quotient
            assert kpi.id in PER_UNIT, f"{kpi.id}: say which KPIs are its numerator and denominator"
            num, den = PER_UNIT[kpi.id]
            assert sum(v[den] for v in lines.values()) == total[den], kpi.id
            for values in (*lines.values(), total):
                expected = (Decimal(values[num]) / values[den]).quantize(Decimal("0.01"))
                assert Decimal(values[kpi.id]) == expected, kpi.id
    for line, (charges, payments, adjustments, costs, margin, visits) in EXPECTED.items():
        v = lines[line]
        assert (v["gross_charges"], v["payments"], v["adjustments"], v["costs"], v["margin"], v["visit_volume"]) \
            == (charges, payments, adjustments, costs, margin, visits), line
    assert (total["gross_charges"], total["payments"], total["adjustments"], total["costs"], total["margin"],
            total["visit_volume"]) == TOTAL
    assert total["charges_per_visit"] == "459.00" and total["payments_per_visit"] == "262.00"


def test_sites_by_service_line_add_up_to_each_site(loaded: sa.Engine) -> None:
    by_line = compute_report(loaded, by="site,service_line,month").to_dict()["rows"]
    by_site = {r["slice"]["site"]: r["values"] for r in compute_report(loaded, by="site,month").to_dict()["rows"]}
    for site in ("alpha", "beta"):
        rows = [r["values"] for r in by_line if r["slice"]["site"] == site]
        for kpi in ("gross_charges", "payments", "adjustments", "margin"):
            present = [Decimal(v[kpi]) for v in rows if v[kpi] is not None]
            if by_site[site][kpi] is None:  # beta imported no costs: no margin anywhere
                assert not present, (site, kpi)
            else:
                assert sum(present, Decimal(0)) == Decimal(by_site[site][kpi]), (site, kpi)
    assert by_site["beta"]["gross_charges"] == "240.00" and by_site["beta"]["costs"] is None


def test_the_drill_down_names_where_each_charge_took_its_line(loaded: sa.Engine) -> None:
    drill = drill_down(loaded, "gross_charges", site="alpha", month="2024-03", service_line=UNATTRIBUTED)
    assert drill.value == "110.00"
    assert [(r["source_id"], r["service_line_from"]) for r in drill.numerator] == [("C6", "unattributed")]
    drill = drill_down(loaded, "gross_charges", site="alpha", month="2024-03", service_line="mohs_surgical")
    assert sorted((r["source_id"], r["service_line_from"]) for r in drill.numerator) == [
        ("C2", "encounter"), ("C5", "procedure_code")]
    drill = drill_down(loaded, "payments", site="alpha", month="2024-03", service_line="physical_therapy")
    assert [(r["source_id"], r["service_line_from"]) for r in drill.numerator] == [("R-C4", "appointment")]


def test_an_encounter_arriving_after_its_charge_moves_it(database_url: str, vocabulary: Path) -> None:
    engine = get_engine(database_url)
    with writer(engine).begin() as conn:
        add_practice(conn, "alpha", "Alpha")
    first = [(_charge("alpha", "C9", "80.00", encounter_source_id="E9"), None)]
    with writer(engine).begin() as conn, rollups.tracking(conn, first):
        canonical.upsert_records(conn, first)
    rollups.refresh_dirty(engine)

    def lines() -> dict[str, str]:
        report = compute_report(engine, by="service_line,month").to_dict()
        return {r["slice"]["service_line"]: r["values"]["gross_charges"] for r in report["rows"]}

    assert lines() == {UNATTRIBUTED: "80.00"}
    later = [(_visit("encounter", "alpha", "E9", service_line="mohs_surgical"), None)]
    with writer(engine).begin() as conn, rollups.tracking(conn, later):
        canonical.upsert_records(conn, later)
    rollups.refresh_dirty(engine)
    assert lines() == {"mohs_surgical": "80.00"}


@pytest.mark.parametrize(("text", "message"), [
    ('procedure_service_lines:\n  "17311": {service_line: dentistry}\n', "needs a service_line among"),
    ('procedure_service_lines:\n  "17311": {name: Mohs}\n', "needs a service_line among"),
    ("procedure_service_lines:\n  \"17311'; DROP\": {service_line: mohs_surgical}\n", "is not a CPT or HCPCS"),
])
def test_a_procedure_map_naming_no_known_service_line_is_refused(vocabulary: Path, text: str,
                                                                  message: str) -> None:
    (vocabulary / "procedure_service_lines.yaml").write_text(text)
    clear_cache()
    with pytest.raises(MappingError, match=message) as caught:
        load_vocabulary(vocabulary)
    assert "procedure_service_lines.yaml" in str(caught.value) or "procedure_service_lines" in str(caught.value)


def test_the_shipped_procedure_map_names_only_known_service_lines() -> None:
    clear_cache()
    vocabulary = load_vocabulary()  # mappings/mso: loading checks every entry
    by_code = vocabulary.entries["procedure_service_lines"]
    assert by_code["17311"]["service_line"] == "mohs_surgical"
    assert "99213" not in by_code  # evaluation and management codes belong to every specialty


def _write(engine: sa.Engine, batch: list[dict[str, Any]]) -> None:
    items = [(r, None) for r in batch]
    with writer(engine).begin() as conn, rollups.tracking(conn, items):
        canonical.upsert_records(conn, items)
    rollups.refresh_dirty(engine)


def test_a_visit_in_another_month_than_its_charge_still_moves_it(database_url: str, vocabulary: Path) -> None:
    # the charge is dated April 1st, its encounter (and that encounter's appointment) March 31st
    engine = get_engine(database_url)
    with writer(engine).begin() as conn:
        add_practice(conn, "alpha", "Alpha")
    _write(engine, [_charge("alpha", "C10", "80.00", service_date=dt.date(2024, 4, 1), encounter_source_id="E10")])

    def april() -> dict[str, str]:
        report = compute_report(engine, by="service_line,month", date_from="2024-04-01",
                                date_to="2024-04-30").to_dict()
        return {r["slice"]["service_line"]: r["values"]["gross_charges"] for r in report["rows"]}

    assert april() == {UNATTRIBUTED: "80.00"}
    _write(engine, [_visit("encounter", "alpha", "E10", start="2024-03-31T16:00:00-05:00",
                           appointment_source_id="A10")])
    assert april() == {UNATTRIBUTED: "80.00"}  # the encounter names no line, its appointment is not there yet
    _write(engine, [_visit("appointment", "alpha", "A10", start="2024-03-31T16:00:00-05:00",
                           service_line="mohs_surgical")])
    assert april() == {"mohs_surgical": "80.00"}


NPI_A, NPI_B = "1234567893", "1245319599"  # synthetic NPIs with valid check digits


def test_providers_are_one_person_across_practices_by_npi(database_url: str, vocabulary: Path) -> None:
    (vocabulary / "providers.yaml").write_text(f'providers:\n  "{NPI_A}": {{family_name: Rivera, given_name: Ana}}\n')
    clear_cache()
    engine = get_engine(database_url)
    with writer(engine).begin() as conn:
        for slug in ("alpha", "beta"):
            add_practice(conn, slug, slug.title())
    _write(engine, [
        # Ana Rivera: alpha's "1001" (its provider record has her NPI), beta's appointment naming her NPI
        {"kind": "provider", "practice": "alpha", "source_id": "1001", "npi": NPI_A, "family_name": "RIVERA"},
        _visit("appointment", "alpha", "A1", provider_source_id="1001"),
        _visit("appointment", "beta", "B1", provider_source_id="RIV", provider_npi=NPI_A),
        # NPI_B used as beta's own id, named only by its feed
        {"kind": "provider", "practice": "beta", "source_id": NPI_B, "family_name": "Okafor", "given_name": "Ben"},
        _visit("appointment", "beta", "B2", provider_source_id=NPI_B),
        _charge("beta", "BC2", "90.00", provider_source_id=NPI_B, encounter_source_id="B2"),
        # "DR9" at both practices, no NPI known: two people, never merged
        _visit("appointment", "alpha", "A9", provider_source_id="DR9"),
        _visit("appointment", "beta", "B9", provider_source_id="DR9"),
    ])
    report = compute_report(engine, by="provider,month").to_dict()
    visits = {r["slice"]["provider"]: r["values"]["visit_volume"] for r in report["rows"]}
    assert visits == {NPI_A: 2, NPI_B: 1, "alpha/DR9": 1, "beta/DR9": 1}
    names = {p["id"]: (p["npi"], p["name"], p["name_from"]) for p in report["providers"]}
    assert names == {NPI_A: (NPI_A, "Ana Rivera", "roster"), NPI_B: (NPI_B, "Ben Okafor", "feed"),
                     "alpha/DR9": (None, None, None), "beta/DR9": (None, None, None)}
    by_site = compute_report(engine, by="site,provider,month").to_dict()["rows"]
    assert sorted((r["slice"]["site"], r["slice"]["provider"]) for r in by_site if r["values"]["visit_volume"]) == [
        ("alpha", NPI_A), ("alpha", "alpha/DR9"), ("beta", NPI_A), ("beta", NPI_B), ("beta", "beta/DR9")]
    drill = drill_down(engine, "visit_volume", site="beta", month="2024-03", provider=NPI_A)
    assert [r["source_id"] for r in drill.numerator] == ["B1"]
    drill = drill_down(engine, "gross_charges", site="beta", month="2024-03", provider=NPI_B)
    assert drill.value == "90.00"
