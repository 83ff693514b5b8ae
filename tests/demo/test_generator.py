"""The synthetic MSO: deterministic, realistic enough to tell sites apart, and rendered as real feeds."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections import Counter

import pytest
import yaml

from hub.connector import Rendered
from hub.demo.expected import by_site_month
from hub.demo.feeds import render_options
from hub.demo.generator import FAMILY_NAMES, FIRST_NAMES, Truth, generate, public
from hub.mapping import load_mapping
from hub.model.schemas import validate_record
from hub.plugins import load_plugins
from tests.conftest import ROOT

END = dt.date(2026, 11, 1)


@pytest.fixture(scope="module")
def truth():  # type: ignore[no-untyped-def]
    return generate(seed=7, end=END, scale=0.3)


def render(truth: Truth, slug: str) -> list[Rendered]:
    """The practice's feed files, as the connector of its feed writes them."""
    spec = truth.practice(slug)
    return load_plugins().connectors.get(spec.feed).render(truth.records[slug], options=render_options(spec))


def test_same_seed_same_mso_and_another_seed_another(truth) -> None:  # type: ignore[no-untyped-def]
    again = generate(seed=7, end=END, scale=0.3)
    assert [public(r) for r in again.records["lakeshore-derm"]] == [public(r) for r in truth.records["lakeshore-derm"]]
    other = generate(seed=8, end=END, scale=0.3)
    assert [public(r) for r in other.records["lakeshore-derm"]] != [public(r) for r in truth.records["lakeshore-derm"]]


def test_four_practices_a_year_and_more_each_on_its_feed(truth) -> None:  # type: ignore[no-untyped-def]
    assert 4 <= len(truth.practices) <= 6
    assert {p.feed for p in truth.practices} == {"hl7v2", "fhir", "csv"}
    assert len(truth.months()) >= 12
    onboarding = [p for p in truth.practices if p.status == "onboarding"]
    assert onboarding and onboarding[0].unmapped_visit_types
    for spec in truth.practices:
        months = {r["start"][:7] for r in truth.of(spec.slug, "appointment")}
        assert len(months) == (spec.months or 13), spec.slug


def test_every_record_fits_the_common_model(truth) -> None:  # type: ignore[no-untyped-def]
    for records in truth.records.values():
        for record in records[:400]:
            validate_record({k: v for k, v in public(record).items() if v is not None})


def test_people_are_synthetic(truth) -> None:  # type: ignore[no-untyped-def]
    for records in truth.records.values():
        for p in (r for r in records if r["kind"] == "patient"):
            assert p["family_name"] in FAMILY_NAMES and p["given_name"] in FIRST_NAMES


def test_sites_differ_and_seasons_show(truth) -> None:  # type: ignore[no-untyped-def]
    figures = by_site_month(truth)
    year = truth.months()

    def mean(site: str, kpi: str) -> float:
        values = [figures[(site, m)][kpi] for m in year if (site, m) in figures]
        return sum(values) / len(values)

    assert mean("fishers-pt", "no_show_rate") > 1.8 * mean("carmel-aesthetics", "no_show_rate")
    assert mean("carmel-aesthetics", "cancellation_rate") > mean("lakeshore-derm", "cancellation_rate")
    assert mean("carmel-aesthetics", "schedule_utilization") > 0.4
    assert all(figures[("lakeshore-derm", m)]["schedule_utilization"] is None for m in year)  # no schedule in that feed
    # physical therapy: the January rush (new deductibles) against the December lull
    assert figures[("fishers-pt", "2026-01")]["visit_volume"] > 1.2 * figures[("fishers-pt", "2025-12")]["visit_volume"]
    # cosmetic: the holiday peak
    assert figures[("carmel-aesthetics", "2025-12")]["visit_volume"] > figures[("carmel-aesthetics", "2026-08")][
        "visit_volume"]


def test_hl7_files_are_v251_batches_of_siu_ref_and_dft(truth) -> None:  # type: ignore[no-untyped-def]
    files = render(truth, "lakeshore-derm")
    types: Counter[str] = Counter()
    for f in files:
        for message in f.data.decode().split("\r\n"):
            if not message:
                continue
            msh = message.split("\r")[0].split("|")
            assert msh[0] == "MSH" and msh[11] == "2.5.1"
            types[msh[8].split("^")[1]] += 1
    assert {"S12", "S14", "S15", "S26", "I12", "P03"} <= set(types)
    appointments = truth.of("lakeshore-derm", "appointment")
    assert types["S12"] == len(appointments)


def test_fhir_files_are_transaction_bundles(truth) -> None:  # type: ignore[no-untyped-def]
    files = render(truth, "carmel-aesthetics")
    kinds: Counter[str] = Counter()
    for f in files:
        bundle = json.loads(f.data)
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
        for entry in bundle["entry"]:
            kinds[entry["resource"]["resourceType"]] += 1
            assert entry["request"]["url"] == f"{entry['resource']['resourceType']}/{entry['resource']['id']}"
    assert kinds["Appointment"] == len(truth.of("carmel-aesthetics", "appointment"))
    assert kinds["Slot"] == len(truth.of("carmel-aesthetics", "slot"))
    assert {"Patient", "Practitioner", "Schedule", "Encounter", "ServiceRequest", "Claim",
            "ExplanationOfBenefit", "Coverage", "Location"} <= set(kinds)


def test_csv_exports_carry_the_columns_the_mapping_names(truth) -> None:  # type: ignore[no-untyped-def]
    mapping = yaml.safe_load((ROOT / "mappings" / "examples" / "fishers-pt.yaml").read_text())
    exports = {e["kind"]: e for e in mapping["connectors"]["csv"]["exports"]}
    files = render(truth, "fishers-pt")
    kind_of = {"appointments": "appointment", "charges": "charge", "payments": "remittance", "referrals": "referral"}
    seen = set()
    for f in files:
        export = f.name.rsplit("/", 1)[1].split("_")[0]
        header = next(csv.reader(io.StringIO(f.data.decode())))
        columns = exports[kind_of[export]]["columns"]
        assert set(columns.values()) <= set(header), f.name
        seen.add(export)
    assert seen == set(kind_of)


def test_example_mappings_load_and_cover_the_live_practices_codes(truth) -> None:  # type: ignore[no-untyped-def]
    for spec in truth.practices:
        path = ROOT / "mappings" / "examples" / f"{spec.slug}.yaml"
        mapping = load_mapping(path.read_text(), source=str(path))
        known = set(mapping.code_maps["visit_type"])
        codes = {v.code for v, _ in spec.visit_types}
        assert codes - known == set(spec.unmapped_visit_types), spec.slug
        assert {c for c, _, _ in spec.locations} <= set(mapping.code_maps["location"])
        assert {p.name for p in spec.payers if p.mapped} <= set(mapping.code_maps["payer"])
        assert not {p.name for p in spec.payers if not p.mapped} & set(mapping.code_maps["payer"])
