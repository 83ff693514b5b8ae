"""``hub watch`` (a drop folder: each file once, to done/ or failed/ with its report, safe across a restart)
and ``hub remit unmatched`` (835 lines matched to 837P charges, and why not)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import orjson
from click.testing import CliRunner

from hub.cli import cli

from .build import GS, ISA, ST, payment

SAMPLES = Path(__file__).resolve().parents[2] / "connectors" / "hub_x12" / "samples"


def hub(*args: str, code: int = 0) -> str:
    done = CliRunner().invoke(cli, list(args))
    assert done.exit_code == code, done.output
    return done.stdout


def remit_file(*claims: str, trace: str = "T1") -> bytes:
    return ISA([GS("1", [ST("0001", [*payment(trace=trace), *claims])])]).bytes()


def test_a_drop_folder_takes_each_file_once_and_moves_it(tmp_path: Path) -> None:
    hub("practice", "add", "north", "--name", "North")
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "a.835").write_bytes(remit_file("CLP*PCN1*1*100*90**12*ICN1", "CAS*CO*45*10"))
    bad = ISA([GS("1", [ST("0001", [*payment(trace="T2"), "CLP*PCN2*1*100*90**12*ICN2"]),
                        ST("0002", [*payment(trace="T3"), "CLP*PCN3*1*1*1**12*ICN3"], se_count=9)])])
    (drop / "b.x12").write_bytes(bad.bytes())
    (drop / "c.835.part").write_bytes(b"ISA*00*")  # an upload in progress: left alone
    out = hub("watch", str(drop), "--practice", "north", "--once", code=1)
    assert "a.835: accepted 1  duplicate 0  error 0  -> done/" in out
    assert "b.x12: accepted 1  duplicate 0  error 1  -> failed/" in out
    assert sorted(p.name for p in drop.iterdir() if p.is_file()) == ["c.835.part"]
    report = json.loads((drop / "failed" / "b.x12.report.json").read_text())
    assert (report["accepted"], report["error"]) == (1, 1)
    # ISA, GS, the first transaction (ST, 11 payment segments, CLP, SE: 3 to 16), then 17 to 30
    assert report["messages"][1]["location"] == "SE-01, segment 30"
    # a restart after the store committed but before the move: the file comes again, its message is a duplicate
    (drop / "a.835").write_bytes((drop / "done" / "a.835").read_bytes())
    out = hub("watch", str(drop), "--practice", "north", "--once")
    assert "a.835: accepted 0  duplicate 1  error 0  -> done/" in out
    assert len(list((drop / "done").glob("a.*.835"))) == 1  # kept beside the first, under a stamped name


def test_a_file_still_being_written_waits_for_the_next_scan(tmp_path: Path, runtime) -> None:  # type: ignore[no-untyped-def]
    from hub.pipeline.watch import DropFolder
    from hub.store.engine import writer
    from hub.store.practices import add_practice

    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "north", "North")
    (tmp_path / "drop").mkdir()
    path = tmp_path / "drop" / "late.835"
    path.write_bytes(remit_file("CLP*PCN1*1*100*90**12*ICN1", "CAS*CO*45*10"))
    drop = DropFolder(runtime, tmp_path / "drop", "north", settle=1.0)
    now = time.time()
    assert drop.ready(now + 5) == []  # first sight: its size is noted
    with path.open("ab") as f:
        f.write(b"\n")  # still growing
    assert drop.ready(now + 5) == []
    old = now - 10
    os.utime(path, (old, old))
    assert drop.ready(now + 5) == []  # changed (mtime) since the last scan
    assert drop.ready(now + 5) == [path]  # unchanged and settled


def test_remit_unmatched_lists_what_found_no_charge_and_why(tmp_path: Path) -> None:
    hub("practice", "add", "north", "--name", "North")
    hub("ingest", "--practice", "north", str(SAMPLES / "claims_837p.x12"))
    # 837P charges: LINE5001 (PCN500 99213 2025-03-01 150), PCN500:2 (11102, 100), PCN600:1 (99203 2025-03-02 80)
    payments = remit_file(
        "CLP*PCN500*1*250*200**12*ICN1",
        "SVC*HC:99213:25*150*120**1", "DTM*472*20250301", "CAS*CO*45*30", "REF*6R*LINE5001",  # by its REF*6R
        "SVC*HC:11102*100*80**2", "DTM*472*20250301", "CAS*CO*45*20",  # by claim, procedure, date, amount
        "CLP*PCN600*1*80*60**MB*ICN2",
        "SVC*HC:99203*80*60**1", "DTM*472*20250309", "CAS*CO*45*20",  # wrong date
        "CLP*PCN700*4*50*0**12*ICN3", "CAS*CO*50*50",  # a claim the hub has no charge of
        "PLB*1999999984*20251231*WO:ICN0*5",  # pays no charge: not counted
        trace="T9")
    path = tmp_path / "pay.835"
    path.write_bytes(payments)
    hub("ingest", "--practice", "north", str(path))
    out = orjson.loads(hub("remit", "unmatched", "--practice", "north", "--format", "json"))
    assert (out["remittances"], out["matched"]) == (4, 2)
    reasons = {u["claim_id"]: u["reason"] for u in out["unmatched"]}
    assert reasons == {"PCN600": "claim 'PCN600' has no 99203 on 2025-03-09",
                       "PCN700": "no charge of claim 'PCN700'"}
    text = hub("remit", "unmatched", "--practice", "north")
    assert "2 of 4 remittance(s) matched a charge (50.0%); 2 unmatched" in text


def test_a_remittance_is_linked_to_its_claims_charge_as_it_is_stored(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from hub.store.engine import get_engine

    hub("practice", "add", "north", "--name", "North")
    # the payment first: its line 11102 of claim PCN500 names no charge (no REF*6R), and there is none yet
    path = tmp_path / "pay.835"
    path.write_bytes(remit_file("CLP*PCN500*1*100*80**12*ICN1", "SVC*HC:11102*100*80**2", "DTM*472*20250301",
                                "CAS*CO*45*20", trace="T7"))
    hub("ingest", "--practice", "north", str(path))
    out = orjson.loads(hub("remit", "unmatched", "--practice", "north", "--format", "json"))
    assert [u["reason"] for u in out["unmatched"]] == ["no charge of claim 'PCN500'"]
    # then the claims: the charge PCN500:2 (11102, 2025-03-01, 100.00) is there, the payment not yet linked
    hub("ingest", "--practice", "north", str(SAMPLES / "claims_837p.x12"))
    out = orjson.loads(hub("remit", "unmatched", "--practice", "north", "--format", "json"))
    assert out["unmatched"][0]["reason"].startswith("its charge 'PCN500:2' arrived after it")
    # a replay of the payment's message links it as it is stored again
    hub("messages", "reprocess", "--practice", "north")
    out = orjson.loads(hub("remit", "unmatched", "--practice", "north", "--format", "json"))
    assert (out["remittances"], out["matched"], out["unmatched"]) == (1, 1, [])
    with get_engine().connect() as conn:
        linked = conn.execute(sa.text("SELECT charge_source_id FROM remittances WHERE claim_id = 'PCN500'")).scalar()
    assert linked == "PCN500:2"
