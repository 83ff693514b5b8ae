"""X12 835 ingest benchmark: one generated 835 file ingested end to end, beside a bare baseline in the same run.

    .venv/bin/python benchmarks/x12_ingest.py [--lines 100000] [--per-payment 1000] [--seed 7]

The file is one interchange of ``lines / per-payment`` 835 transactions (one payment each: BPR, TRN,
payer, payee), each claim of one to four service lines (SVC, DTM*472, one or two CAS, sometimes LQ),
with denials, reversals and PLB sprinkled in; synthetic values only. Measured, service lines per second:

- connector only: ``split`` + ``parse`` + ``to_canonical`` (no storage);
- end to end: ``hub.pipeline.intake.receive`` with the inline dispatcher into a fresh SQLite store (each
  transaction saved as a message, records mapped, validated, upserted with lineage, report upkeep);
- baseline: read the file, split segments and elements with ``str.split``, pick the fields of each SVC
  and its claim, insert the raw transactions and one row per line into SQLite, in one transaction.

Both stores run at the hub's SQLite ``synchronous`` level (HUB_SQLITE_SYNCHRONOUS, NORMAL here) in WAL
mode, so both pay the same syncs.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CPT = ("99213", "99214", "99203", "11102", "17000", "96372", "36415", "93000")
PAYERS = (("SYNTHETIC HEALTH PLAN", "SHP01"), ("MEDICARE SYNTHETIC", "MCR01"), ("BLUE SYNTHETIC", "BSY01"))


def generate(lines: int, per_payment: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    out = ["ISA*00*          *00*          *ZZ*SYNTHPAYER     *ZZ*SYNTHCLINIC    *250305*0930*^*00501*000000001*0*P*:",
           "GS*HP*SYNTHPAYER*SYNTHCLINIC*20250305*0930*1*X*005010X221A1"]
    made, st = 0, 0
    while made < lines:
        st += 1
        payer, payer_id = rnd.choice(PAYERS)
        paid_on = f"202503{rnd.randint(1, 28):02d}"
        body = [f"BPR*I*0*C*ACH*CCP*01*999999992*DA*123456*1512345678**01*999988880*DA*98765*{paid_on}",
                f"TRN*1*EFT{st:08d}*1512345678", f"N1*PR*{payer}", f"REF*2U*{payer_id}",
                "N1*PE*SYNTHETIC CLINIC*XX*1999999984", "LX*1"]
        in_payment, claim = 0, 0
        while in_payment < per_payment and made < lines:
            claim += 1
            count = min(rnd.randint(1, 4), per_payment - in_payment, lines - made)
            status = rnd.choices(("1", "2", "4", "22"), (80, 8, 10, 2))[0]
            sign = "-" if status == "22" else ""
            amounts = [(a, min(rnd.randint(0, 9) * 10, a - 10)) for a in
                       (rnd.choice((80, 120, 150, 200, 300)) for _ in range(count))]
            charged = sum(a for a, _ in amounts)
            paid = 0 if status == "4" else sum(a - adj for a, adj in amounts)
            body.append(f"CLP*PCN{st:05d}{claim:04d}*{status}*{sign}{charged}*{sign}{paid}*0*12*ICN{st:05d}{claim:04d}")
            body.append(f"DTM*232*202502{rnd.randint(1, 28):02d}")
            for amount, adjustment in amounts:
                line_paid = 0 if status == "4" else amount - adjustment
                body.append(f"SVC*HC:{rnd.choice(CPT)}{':25' if rnd.random() < 0.2 else ''}*{sign}{amount}"
                            f"*{sign}{line_paid}**1")
                body.append(f"DTM*472*202502{rnd.randint(1, 28):02d}")
                if status == "4":
                    body.append(f"CAS*CO*50*{sign}{amount}")
                    body.append("LQ*HE*N130")
                elif adjustment:
                    body.append(f"CAS*CO*45*{sign}{adjustment - 5}*1*253*{sign}5" if adjustment > 5
                                else f"CAS*CO*45*{sign}{adjustment}")
                made += 1
                in_payment += 1
        if rnd.random() < 0.1:
            body.append("PLB*1999999984*20251231*WO:ICN0*12.50")
        out += [f"ST*835*{st:04d}", *body, f"SE*{len(body) + 2}*{st:04d}"]
    out += [f"GE*{st}*1", "IEA*1*000000001"]
    return ("~\n".join(out) + "~\n").encode("ascii")


def connector_only(data: bytes) -> tuple[int, float]:
    from hub_x12 import X12Connector

    from hub.connector import Context

    began = time.perf_counter()
    connector = X12Connector()
    records = 0
    for envelope in connector.split(data):
        context = Context(practice="north")
        records += len(list(connector.to_canonical(connector.parse(envelope, context), context)))
    return records, time.perf_counter() - began


def end_to_end(data: bytes, folder: Path) -> tuple[int, float]:
    from hub.pipeline.intake import receive
    from hub.runtime import Runtime
    from hub.store.canonical import count_records
    from hub.store.engine import writer
    from hub.store.practices import add_practice

    runtime = Runtime.create(database_url=f"sqlite:///{folder / 'hub.db'}", dispatcher="inline")
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "north", "North Synthetic Clinic")
    began = time.perf_counter()
    receipts = receive(runtime, "north", data, origin="bench.835")
    took = time.perf_counter() - began
    bad = [r for r in receipts if r.status != "accepted"]
    if bad:
        raise SystemExit(f"{len(bad)} transactions were not accepted: {bad[0].outcome.error}")
    with runtime.engine.connect() as conn:
        stored = count_records(conn, "north")["remittance"]
    return stored, took


def _synchronous() -> str:
    return os.environ.get("HUB_SQLITE_SYNCHRONOUS", "FULL").upper()


def baseline(data: bytes, folder: Path) -> tuple[int, float]:
    """Split segments and elements, pick each line's fields and its claim's, insert raw and rows."""
    db = sqlite3.connect(folder / "baseline.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={_synchronous()}")
    db.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, raw BLOB)")
    db.execute("CREATE TABLE lines (source_id TEXT PRIMARY KEY, claim_id TEXT, status TEXT, procedure TEXT, "
               "charged TEXT, paid TEXT, adjustments TEXT, service_date TEXT, trace TEXT)")
    began = time.perf_counter()
    text = data.decode("latin-1")
    segments = [s.strip() for s in text.split("~") if s.strip()]
    messages: list[tuple[bytes]] = []
    rows: list[tuple[str, ...]] = []
    start, trace, clp, line, n = 0, "", [""] * 8, None, 0
    for i, seg in enumerate(segments):
        e = seg.split("*")
        sid = e[0]
        if sid == "ST":
            start = i
        elif sid == "SE":
            messages.append(("~".join(segments[start:i + 1]).encode(),))
        elif sid == "TRN":
            trace = e[2]
        elif sid == "CLP":
            clp = e
        elif sid == "SVC":
            n += 1
            line = [f"{trace}:{n}", clp[1], clp[2], e[1].split(":")[1], e[2], e[3], "", ""]
            rows.append(line)  # type: ignore[arg-type]
        elif sid == "DTM" and line is not None and e[1] == "472":
            line[7] = e[2]
        elif sid == "CAS" and line is not None:
            line[6] += seg
    with db:
        db.executemany("INSERT INTO messages (raw) VALUES (?)", messages)
        db.executemany("INSERT INTO lines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [(*r, trace) for r in rows])
    took = time.perf_counter() - began
    db.close()
    return len(rows), took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--per-payment", type=int, default=1000, help="service lines per 835 transaction")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    os.environ.setdefault("HUB_SQLITE_SYNCHRONOUS", "NORMAL")
    data = generate(args.lines, args.per_payment, args.seed)
    print(f"835 of {args.lines:,} service lines, {len(data) / 1e6:.1f} MB, {data.count(b'ST*835'):,} transactions; "
          f"SQLite synchronous={_synchronous()} for the hub and the baseline alike")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        lines, took = baseline(data, folder)
        print(f"  baseline (split + insert)   {lines:>8,} lines  {took:6.2f} s  {lines / took:>9,.0f} lines/s")
        records, took_c = connector_only(data)
        print(f"  connector only              {records:>8,} records {took_c:6.2f} s  "
              f"{records / took_c:>9,.0f} records/s")
        stored, took_e = end_to_end(data, folder)
        print(f"  end to end (hub ingest)     {stored:>8,} records {took_e:6.2f} s  {stored / took_e:>9,.0f} records/s"
              f"  ({took_e / took:.0f}x the baseline's time)")


if __name__ == "__main__":
    main()
