"""``hub ingest --report`` (the 999-style acceptance report of each file), payer ids through the payer
map, the onboarding scorecard's matched share of remittances, and every CLP status end to end into the
KPIs (figures worked out by hand below)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from hub.cli import cli
from hub.mapping import load_mapping

from .build import GS, ISA, ST, payment

MAPPING = """\
version: 1
practice: north
code_maps:
  payer:
    SYNTHETIC HEALTH PLAN: {payer: aetna}
    MCR01: {payer: medicare}
"""


def hub(*args: str, code: int = 0) -> tuple[str, str]:
    done = CliRunner().invoke(cli, list(args))
    assert done.exit_code == code, done.output
    return done.stdout, done.stderr


def claims_837(*claims: tuple[str, str, str]) -> bytes:
    """An 837P of one-line claims (claim id, procedure, amount), each served on 2025-03-01."""
    body = ["BHT*0019*00*B1*20250305*1015*CH", "HL*1**20*1", "NM1*85*2*CLINIC*****XX*1999999984",
            "HL*2*1*22*0", "SBR*P*18*******CI", "NM1*IL*1*SAMPLETON*AVERY****MI*M1", "NM1*PR*2*PLAN*****PI*P1"]
    for claim_id, procedure, amount in claims:
        body += [f"CLM*{claim_id}*{amount}***11:B:1*Y*A*Y*Y", "HI*ABK:L989", "LX*1",
                 f"SV1*HC:{procedure}*{amount}*UN*1***1", "DTP*472*D8*20250301"]
    return ISA([GS("1", [ST("0001", body, set_id="837", version="005010X222A1")], code="HC",
                   version="005010X222A1")], control="000000900").bytes()


def line(claim_id: str, status: str, charged: str, paid: str, *cas: str) -> list[str]:
    """A claim of one 99213 service line served on 2025-03-01."""
    return [f"CLP*{claim_id}*{status}*{charged}*{paid}**12*ICN{claim_id}", f"SVC*HC:99213*{charged}*{paid}**1",
            "DTM*472*20250301", *cas]


# ------------------------------------------------------------------ hub ingest --report
def test_hub_ingest_writes_the_files_acceptance_report_and_keeps_its_counts_line(tmp_path: Path) -> None:
    hub("practice", "add", "north", "--name", "North")
    claim = ["CLP*PCN1*1*100*80**12*ICN1", "CAS*CO*45*20", "DTM*232*20250301"]
    # two 835s in one group; the second's SE-02 names another control number. Segments: ISA 1, GS 2,
    # the first ST 3 + 11 header + 3 claim + SE = 3..18, the second ST 19, its SE 19 + 15 = 34
    good = ST("0001", [*payment(), *claim])
    bad = ST("0002", [*payment(trace="CHK2"), *claim], se_control="0099")
    path = tmp_path / "pay.835"
    path.write_bytes(ISA([GS("1", [good, bad])]).bytes())
    report = tmp_path / "report.json"
    out, err = hub("ingest", "--practice", "north", "--report", str(report), str(path), code=1)
    assert out.splitlines()[-1] == "accepted 1  duplicate 0  error 1"  # the contract line, unchanged
    doc = orjson.loads(report.read_bytes())
    assert (doc["accepted"], doc["duplicate"], doc["error"]) == (1, 0, 1)
    [file] = doc["files"]
    assert file["file"] == str(path) and file["connector"] == "x12"
    assert (file["accepted"], file["duplicate"], file["error"]) == (1, 0, 1)
    rows = file["report"]["transactions"]
    assert [(r["set"], r["control"], r["group"], r["interchange"], r["status"]) for r in rows] == [
        ("835", "0001", "1", "000000101", "accepted"), ("835", "0002", "1", "000000101", "rejected")]
    assert rows[1]["location"] == "SE-02, segment 34"
    assert "'0099'" in rows[1]["error"] and "'0002'" in rows[1]["error"]
    assert "SAMPLETON" not in report.read_text()  # no patient data
    # the same file again: both are repeats (the refused one of a refused message)
    out, _ = hub("ingest", "--practice", "north", "--report", str(report), str(path))
    assert out.splitlines()[-1] == "accepted 0  duplicate 2  error 0"
    doc = orjson.loads(report.read_bytes())
    assert [r["status"] for r in doc["files"][0]["report"]["transactions"]] == ["duplicate", "duplicate"]


def test_a_report_that_cannot_be_written_is_a_clear_error(tmp_path: Path) -> None:
    hub("practice", "add", "north", "--name", "North")
    path = tmp_path / "pay.835"
    path.write_bytes(ISA([GS("1", [ST("0001", [*payment(), *line("PCN1", "1", "100", "80", "CAS*CO*45*20")])])])
                     .bytes())
    done = CliRunner().invoke(cli, ["ingest", "--practice", "north", "--report", str(tmp_path / "no" / "r.json"),
                                    str(path)])
    assert done.exit_code != 0  # refused before anything is stored
    assert "--report" in done.stderr and "Traceback" not in done.output and "a bug" not in done.output
    assert "accepted" not in done.stdout


# ------------------------------------------------------------------ payer ids
def test_the_payer_map_matches_a_payer_id_when_the_name_is_not_mapped() -> None:
    mapping = load_mapping(MAPPING)
    by_id = mapping.apply({"kind": "charge", "payer_name": "MEDICARE OF SOMEWHERE", "payer_id": "mcr01"})
    assert (by_id["payer"], by_id["financial_class"]) == ("medicare", "medicare")
    by_name = mapping.apply({"kind": "charge", "payer_name": "Synthetic Health Plan", "payer_id": "MCR01"})
    assert by_name["payer"] == "aetna"  # the name is mapped: it wins over the id
    neither = mapping.apply({"kind": "remittance", "payer_name": "OTHER", "payer_id": "X9"})
    assert neither.get("payer") is None


def test_two_payers_in_one_835_each_through_its_own_payer_map_entry(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from hub.store.engine import get_engine

    (tmp_path / "north.yaml").write_text(MAPPING)
    hub("practice", "add", "north", "--name", "North", "--mapping", str(tmp_path / "north.yaml"))
    first = ST("0001", [*payment(payer="SYNTHETIC HEALTH PLAN", payer_id="SHP01", trace="T1"),
                        *line("PCN1", "1", "100", "80", "CAS*CO*45*20")])
    # the second payer's name is not in the map, its id (REF*2U) is
    second = ST("0002", [*payment(payer="MEDICARE SYNTHETIC", payer_id="MCR01", trace="T2"),
                         *line("PCN2", "1", "100", "70", "CAS*CO*45*30")])
    path = tmp_path / "pay.835"
    path.write_bytes(ISA([GS("1", [first, second])]).bytes())
    out, _ = hub("ingest", "--practice", "north", str(path))
    assert out.splitlines()[-1] == "accepted 2  duplicate 0  error 0"
    with get_engine().connect() as conn:
        rows = conn.execute(sa.text("SELECT claim_id, payer_name, payer_id, payer "
                                    "FROM remittances ORDER BY claim_id")).all()
    assert [tuple(r) for r in rows] == [("PCN1", "SYNTHETIC HEALTH PLAN", "SHP01", "aetna"),
                                        ("PCN2", "MEDICARE SYNTHETIC", "MCR01", "medicare")]
    unmapped, _ = hub("mapping", "unmapped", "--practice", "north", "--format", "json")
    assert "MEDICARE SYNTHETIC" not in unmapped


# ------------------------------------------------------------------ scorecard: matched share
def test_the_scorecard_reports_the_matched_share_of_remittances(tmp_path: Path) -> None:
    hub("practice", "add", "north", "--name", "North")
    claims = tmp_path / "claims.837"
    claims.write_bytes(claims_837(("PCN1", "99213", "100"), ("PCN2", "99213", "100")))
    payments = tmp_path / "pay.835"
    payments.write_bytes(ISA([GS("1", [ST("0001", [
        *payment(),
        *line("PCN1", "1", "100", "80", "CAS*CO*45*20"),  # its claim's line: matched
        *line("PCN2", "1", "90", "60", "CAS*CO*45*30"),  # 90 charged, the claim's line 100: not matched
        *line("PCN9", "4", "100", "0", "CAS*CO*50*100"),  # no charge of that claim
        "PLB*1999999984*20251231*WO:ICN0*5"])])]).bytes())  # pays no charge: left out
    card = orjson.loads(hub("onboard", "check", "--practice", "north", "--format", "json", "--no-findings",
                            str(claims), str(payments), code=1)[0])
    matched = card["remittances_matched"]
    assert (matched["remittances"], matched["matched"], matched["share"]) == (3, 1, 0.3333)
    assert {u["reason"]: u["count"] for u in matched["unmatched"]} == {
        "no line of its claim with its procedure, service date and amount": 1, "no charge of its claim": 1}
    text = hub("onboard", "check", "--practice", "north", "--no-findings", str(claims), str(payments), code=1)[0]
    assert "remittances matched to a charge 1/3 33.3 %" in text
    # the stored scorecard: the same figures from the stored messages
    hub("ingest", "--practice", "north", str(claims), str(payments))
    stored = orjson.loads(hub("practice", "go-live", "north", "--format", "json", code=1)[0])
    assert (stored["remittances_matched"]["remittances"], stored["remittances_matched"]["matched"]) == (3, 1)
    # a sample without remittances says nothing of them
    card = orjson.loads(hub("onboard", "check", "--practice", "north", "--format", "json", "--no-findings",
                            str(claims), code=1)[0])
    assert card["remittances_matched"] is None


# ------------------------------------------------------------------ every CLP status into the KPIs
def test_every_claim_status_ingested_end_to_end_gives_the_collections_and_denials_by_hand(tmp_path: Path) -> None:
    from hub.reports import compute_report
    from hub.store.engine import get_engine

    hub("practice", "add", "north", "--name", "North", "--timezone", "America/Chicago")
    statuses = ["1", "2", "3", "4", "19", "20", "21", "22", "23"]
    claims = tmp_path / "claims.837"
    claims.write_bytes(claims_837(*((f"PCN{s}", "99213", "100") for s in statuses)))
    # (status, paid, CAS): charged 100 each; the adjustments make up the difference
    first = [line("PCN1", "1", "100", "80", "CAS*CO*45*20"),
             line("PCN2", "2", "100", "15", "CAS*OA*23*85"),
             line("PCN3", "3", "100", "5", "CAS*OA*23*95"),
             line("PCN4", "4", "100", "0", "CAS*CO*50*100"),  # denied
             line("PCN19", "19", "100", "70", "CAS*CO*45*10", "CAS*PR*1*20"),
             line("PCN20", "20", "100", "10", "CAS*OA*23*90"),
             line("PCN21", "21", "100", "3", "CAS*OA*23*97"),
             line("PCN23", "23", "100", "0", "CAS*CO*109*100"),
             line("PCN22", "1", "100", "60", "CAS*CO*45*40")]  # the original payment of claim PCN22
    # a later payment reverses PCN22 (status 22, negative amounts) and pays its correction
    second = [line("PCN22", "22", "-100", "-60", "CAS*CO*45*-40"), line("PCN22", "1", "100", "70", "CAS*CO*45*30")]
    payments = tmp_path / "pay.835"
    payments.write_bytes(ISA([GS("1", [
        ST("0001", [*payment(trace="T1", total="243"), *[s for c in first for s in c]]),
        ST("0002", [*payment(trace="T2", total="10"), *[s for c in second for s in c]])])]).bytes())
    out, _ = hub("ingest", "--practice", "north", str(claims), str(payments))
    assert out.splitlines()[-1] == "accepted 3  duplicate 0  error 0"
    unmatched = orjson.loads(hub("remit", "unmatched", "--practice", "north", "--format", "json")[0])
    assert (unmatched["remittances"], unmatched["matched"]) == (11, 11)

    doc = compute_report(get_engine(), by="site,month", date_from="2025-03-01", date_to="2025-03-31").to_dict()
    [row] = [r for r in doc["rows"] if r["slice"]["month"] == "2025-03"]
    values = row["values"]
    # charges: nine lines of 100
    assert Decimal(str(values["gross_charges"])) == Decimal("900")
    # paid: 80 + 15 + 5 + 0 + 70 + 10 + 3 + 0 + (60 - 60 + 70) = 253: the correction counts once
    assert Decimal(str(values["payments"])) == Decimal("253")
    # adjusted: 20 + 85 + 95 + 100 + 30 + 90 + 97 + 100 + (40 - 40 + 30) = 647 (= 900 charged - 253 paid)
    assert Decimal(str(values["adjustments"])) == Decimal("647")
    # contractual (CO): 20 + 100 + 10 + 100 + (40 - 40 + 30) = 260; net collection 253 / (900 - 260)
    assert values["net_collection_rate"] == pytest.approx(253 / 640, abs=1e-4)
    # denial rate: denied remittance lines / remittance lines: PCN4 of the 11 lines (the reversal and the
    # correction are lines of their own), by count and by the charge amounts of those lines (100 / 1100)
    assert values["denial_rate"] == pytest.approx(1 / 11, abs=1e-4)
    assert values["denial_rate_usd"] == pytest.approx(1 / 11, abs=1e-4)
