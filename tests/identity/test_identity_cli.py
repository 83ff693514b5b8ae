"""``hub identity`` as an operator runs it, after HL7 feeds from two practices went through ``hub ingest``."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from tests.conftest import ROOT


def hub(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "hub", *args], capture_output=True, text=True, env=os.environ.copy(),
                          cwd=ROOT, timeout=180)
    if check:
        assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done


def adt(control: str, mrn: str, family: str, given: str, born: str, phone: str, street: str) -> str:
    return "\r".join([
        f"MSH|^~\\&|EHR|SITE|HUB|MSO|20250301120000||ADT^A04|{control}|P|2.5.1",
        "EVN|A04|20250301120000",
        f"PID|1||{mrn}^^^SITE^MR||{family}^{given}||{born}|M|||{street}^^Milwaukee^WI^53202^^H||{phone}",
        "PV1|1|O",
    ]) + "\r"


def test_ingest_links_across_practices_and_the_operator_commands_work(tmp_path: Path) -> None:
    north, south = tmp_path / "north.hl7", tmp_path / "south.hl7"
    north.write_text(adt("N1", "N100", "Kowalski", "Robert", "19720309", "(414)555-0143", "114 Elm Street")
                     + adt("N2", "N200", "Holm", "Greta", "19990909", "(414)555-0177", "9 Lake Ave"))
    south.write_text(adt("S1", "S100", "Kowalski", "Bob", "19720309", "414-555-0143", "114 Elm St")
                     + adt("S2", "S200", "Okafor", "James", "19600120", "(414)555-0122", "7 Oak Ct"))
    for slug in ("north", "south"):
        hub("practice", "add", slug, "--name", slug.title())
    first = hub("ingest", "--practice", "north", "--connector", "hl7v2", str(north))
    assert first.stdout.strip() == "accepted 2  duplicate 0  error 0"  # the ingest line is as it was
    assert "identity run (full): 2 patients" in first.stderr
    second = hub("ingest", "--practice", "south", "--connector", "hl7v2", str(south))
    assert "identity run (incremental): 4 patients, 2 compared" in second.stderr

    exported = list(csv.DictReader(io.StringIO(hub("identity", "export", "--format", "csv").stdout)))
    by_key = {(r["practice"], r["source_id"]): r for r in exported}
    assert len(exported) == 4
    assert by_key[("north", "N100")]["enterprise_id"] == by_key[("south", "S100")]["enterprise_id"]
    assert by_key[("south", "S100")]["method"] == "match"
    assert len({r["enterprise_id"] for r in exported}) == 3

    explained = json.loads(hub("identity", "explain", "south", "S100", "--format", "json").stdout)
    assert sorted(m["source_id"] for m in explained["cluster"]) == ["N100", "S100"]
    (pair,) = explained["pairs"]
    assert pair["agreement"]["given"] == "nickname" and pair["agreement"]["phone"] == "exact"
    assert "Kowalski" not in json.dumps(explained) and "1972" not in json.dumps(explained)
    text = hub("identity", "explain", "north", "N100").stdout
    assert "2 record(s) under this id" in text

    # the operator: Greta and James are one person (say the feeds say so elsewhere); then Robert is split off
    assert "linked" in hub("identity", "link", "north", "N200", "south", "S200").stdout
    hub("identity", "split", "south", "S100")
    rows = {(r["practice"], r["source_id"]): r for r in json.loads(hub("identity", "export").stdout)}
    assert rows[("north", "N200")]["enterprise_id"] == rows[("south", "S200")]["enterprise_id"]
    assert rows[("south", "S100")]["enterprise_id"] != rows[("north", "N100")]["enterprise_id"]
    assert rows[("south", "S100")]["method"] == "split" and rows[("south", "S200")]["method"] == "manual"
    assert "0 pair(s) to review" in hub("identity", "review").stdout
    assert "identity run (full)" in hub("identity", "run", "--full").stdout
    again = {(r["practice"], r["source_id"]): r for r in json.loads(hub("identity", "export").stdout)}
    assert {k: r["enterprise_id"] for k, r in again.items()} == {k: r["enterprise_id"] for k, r in rows.items()}

    unknown = hub("identity", "explain", "north", "NOPE", check=False)
    assert unknown.returncode == 1 and "no patient 'NOPE' at practice 'north'" in unknown.stderr

    engine = sa.create_engine(os.environ["HUB_DATABASE_URL"])
    with engine.connect() as conn:
        actions = [a for (a,) in conn.execute(sa.text(
            "SELECT action FROM audit_log WHERE address LIKE 'cli:%' AND action LIKE 'identity.%' ORDER BY id"))]
    engine.dispose()
    assert actions == ["identity.export", "identity.explain", "identity.explain", "identity.link", "identity.split",
                       "identity.export", "identity.review", "identity.run", "identity.export"]
