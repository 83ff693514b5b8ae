"""A feed that cannot carry denials gives no denial rate (no data, with the reason), never 0.0 %, and its site
stays out of the MSO's denial rates and their site median.

Four practices, February 2025 (every figure below is worked out by hand from these records):

- east (remittances that say whether each line was denied, as an 835 or a FHIR ClaimResponse does): four
  $100 charges, one denied: 1/4 lines, $100/$400;
- south (the same kind of feed): a $300 charge denied, a $100 charge paid: 1/2 lines, $300/$400;
- west (HL7 v2 DFT: charges and payment postings, which have no place for a denial): two $100 charges paid;
- north (payments from an export without a denied column): one $200 charge paid.

MSO: 2 denied of the 6 lines east and south adjudicated (1/3, not 2/9), $400 of $800 (0.5); site median
of 0.25 and 0.5 (0.375) and of 0.25 and 0.75 (0.5).
"""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hub.reports import compute_report, rollups
from hub.reports.drill import drill_down
from hub.runtime import Runtime
from hub.store import canonical
from hub.store.engine import writer
from hub.store.practices import add_practice

TODAY = dt.date(2025, 4, 1)
FEB = "2025-02"
HL7_REASON = "HL7 v2 DFT payment postings carry no denials"
NO_FIELD = "no denial data: its remittances do not say which lines were denied"


def _charge(site: str, cid: str, amount: str) -> dict[str, Any]:
    return {"kind": "charge", "practice": site, "source_id": cid, "service_date": dt.date(2025, 2, 3),
            "amount": Decimal(amount), "service_line": "dermatology", "financial_class": "commercial"}


def _remit(site: str, cid: str, paid: str, denied: bool | None) -> dict[str, Any]:
    record = {"kind": "remittance", "practice": site, "source_id": f"P-{cid}", "charge_source_id": cid,
              "paid_amount": Decimal(paid), "paid_on": dt.date(2025, 2, 20)}
    if denied is not None:  # a feed without denials leaves the field out
        record["denied"] = denied
    return record


def _dft(control: str, *ft1s: str) -> str:
    return "\r".join([f"MSH|^~\\&|PM|WEST|HUB|MSO|20250220120000||DFT^P03^DFT_P03|{control}|P|2.5.1",
                      "EVN|P03|20250220120000", "PID|1||MRN1^^^WEST^MR||Doe^Sam||19800101|F",
                      "PV1|1|O|MAIN||||||||||||||||V1", *ft1s]) + "\r"


def _ft1(n: int, tid: str, kind: str, amount: str, charge: str = "") -> str:
    fields = {1: str(n), 2: tid, 4: "20250203", 5: "20250220" if kind != "CG" else "20250203", 6: kind,
              7: "99213", 10: "1", 11: amount, 23: charge}
    return "|".join(["FT1"] + [fields.get(i, "") for i in range(1, 24)])


@pytest.fixture
def report_engine(tmp_path: Path) -> Any:
    runtime = Runtime.create(database_url=os.environ["HUB_DATABASE_URL"], dispatcher="inline")
    engine = runtime.engine
    records = [
        *(_charge("east", f"E{i}", "100.00") for i in range(1, 5)),
        _remit("east", "E1", "0.00", True), *(_remit("east", f"E{i}", "60.00", False) for i in range(2, 5)),
        _charge("south", "S1", "300.00"), _charge("south", "S2", "100.00"),
        _remit("south", "S1", "0.00", True), _remit("south", "S2", "60.00", False),
        _charge("north", "N1", "200.00"), _remit("north", "N1", "120.00", None),
    ]
    with writer(engine).begin() as conn:
        for slug in ("east", "south", "west", "north"):
            add_practice(conn, slug, slug.title(), timezone="America/Chicago")
        items = [(r, None) for r in records]
        with rollups.tracking(conn, items):
            canonical.upsert_records(conn, items)
    # west's charges and payments through the HL7 v2 connector, as its practice-management system sends them
    feed = tmp_path / "west.hl7"
    feed.write_text(_dft("CHG1", _ft1(1, "C1", "CG", "100.00"), _ft1(2, "C2", "CG", "100.00"))
                    + _dft("PAY1", _ft1(1, "PAY-C1", "PY", "60.00", "C1"), _ft1(2, "PAY-C2", "PY", "60.00", "C2")))
    from hub.pipeline.ingest import ingest_paths

    assert ingest_paths(runtime, "west", [feed], connector="hl7v2").get("accepted") == 2
    rollups.refresh_dirty(engine)
    return engine


def test_a_feed_without_denials_gives_no_denial_rate_and_stays_out_of_the_mso(report_engine: Any) -> None:
    report = compute_report(report_engine, by="site,month", today=TODAY).to_dict()
    rows = {r["slice"]["site"]: r["values"] for r in report["rows"] if r["slice"]["month"] == FEB}
    assert rows["east"]["denial_rate"] == 0.25 and rows["east"]["denial_rate_usd"] == 0.25
    assert rows["south"]["denial_rate"] == 0.5 and rows["south"]["denial_rate_usd"] == 0.75
    for site in ("west", "north"):  # no data, not 0.0 %
        assert rows[site]["denial_rate"] is None and rows[site]["denial_rate_usd"] is None, site
        assert rows[site]["payments"] == {"west": "120.00", "north": "120.00"}[site]  # their payments still count
    # the reason: the connector's own words where one of the site's feeds says it cannot carry the field
    assert report["left_out"]["denial_rate"] == {"west": HL7_REASON, "north": NO_FIELD}
    assert report["left_out"]["denial_rate_usd"] == {"west": HL7_REASON, "north": NO_FIELD}
    assert "payments" not in report["left_out"]
    total = next(r["values"] for r in report["total"] if r["slice"]["month"] == FEB)
    assert total["denial_rate"] == pytest.approx(1 / 3, abs=1e-6)  # 2 of east and south's 6 lines, not 2 of 10
    assert total["denial_rate_usd"] == 0.5
    assert total["payments"] == "480.00"  # 180 + 60 + 120 + 120: every site's payments
    median = next(r["values"] for r in report["site_median"] if r["slice"]["month"] == FEB)
    assert median["denial_rate"] == pytest.approx(0.375) and median["denial_rate_usd"] == pytest.approx(0.5)


def test_the_drill_down_of_a_site_without_denials_has_no_figure_either(report_engine: Any) -> None:
    west = drill_down(report_engine, "denial_rate", site="west", month=FEB)
    assert west.value is None
    assert sorted(r["source_id"] for r in west.denominator or []) == ["PAY-C1", "PAY-C2"]  # the lines, still
    assert drill_down(report_engine, "denial_rate", site="east", month=FEB).value == 0.25


def test_a_site_with_one_line_that_says_keeps_its_figure(report_engine: Any) -> None:
    """A practice whose payments moved from an export without denials to 835s: the figure stays (over
    every line, the ones that cannot say counting as not denied), and the site stays in the MSO's."""
    with writer(report_engine).begin() as conn:
        items = [(_charge("north", "N2", "200.00"), None), (_remit("north", "N2", "0.00", True), None)]
        with rollups.tracking(conn, items):
            canonical.upsert_records(conn, items)
    rollups.refresh_dirty(report_engine)
    report = compute_report(report_engine, by="site,month", today=TODAY).to_dict()
    north = next(r["values"] for r in report["rows"] if r["slice"] == {"site": "north", "month": FEB})
    assert north["denial_rate"] == 0.5 and north["denial_rate_usd"] == 0.5
    assert report["left_out"]["denial_rate"] == {"west": HL7_REASON}


def test_connectors_declare_what_their_format_cannot_carry() -> None:
    from hub.plugins import load_plugins

    connectors = {c.name: c for c in load_plugins().connectors.classes()}
    assert "remittance.denied" in connectors["hl7v2"].cannot_carry
    for name in ("x12", "fhir", "csv"):  # an 835 and a ClaimResponse say so; a CSV carries what its mapping maps
        assert "remittance.denied" not in connectors[name].cannot_carry, name
    assert connectors["hl7v2"].describe()["cannot_carry"]["remittance.denied"] == HL7_REASON
