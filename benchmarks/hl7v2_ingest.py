"""HL7 v2 ingest benchmark: normalize and end-to-end ingest, beside a bare baseline from the same run.

    .venv/bin/python benchmarks/hl7v2_ingest.py [--count 100000] [--batch 500] [--seed 7]

A generated, realistic v2.5.1 mix (ADT A04/A08 with IN1, SIU S12/S14/S15/S26, DFT
P03 with 1–5 FT1; about 1 KB each, synthetic patients) is measured as:

- parsers alone: hl7apy ``parse_message``, python-hl7 ``hl7.parse`` and this
  connector's tokenizer (on a sample, to place the figures side by side);
- normalize, connector only: split + parse + to_canonical (no storage);
- normalize, full core path: ``hub.pipeline.normalize.normalize_payload`` (adds the
  mapping, identity link and marshmallow validation);
- end-to-end ingest: ``hub.pipeline.intake.receive_many`` with the inline dispatcher
  into a fresh SQLite store (raw message saved, records upserted, lineage);
- baseline: read, ``str.split``, pick the same key fields, batch-insert into SQLite.

Figures are messages per second on one process (one core).
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

FAMILIES = ("Sampleton", "Example", "Placeholder", "Testwood", "Mockford", "Demoski", "Fixture", "Synthia")
GIVEN = ("Avery", "Jordan", "Riley", "Morgan", "Casey", "Quinn", "Rowan", "Emerson")
CPT = ("99213", "99214", "99203", "11102", "17000", "96372", "36415", "93000")
DX = ("L98.9", "D48.5", "E11.9", "I10", "J06.9", "M54.5")
PAYERS = ("AETNA PPO^AET01", "BLUE CROSS^BCBS1", "MEDICARE B^MCR01", "MEDICAID^MCD01", "SELF PAY^SELF")


def generate(count: int, seed: int) -> list[bytes]:
    rnd = random.Random(seed)
    out = []
    for n in range(count):
        kind = rnd.random()
        mrn = f"MRN{rnd.randint(100000, 160000)}"
        stamp = (f"2025{rnd.randint(1, 12):02d}{rnd.randint(1, 28):02d}{rnd.randint(8, 17):02d}"
                 f"{rnd.choice((0, 15, 30, 45)):02d}00-0500")
        npi = f"1{rnd.randint(100000000, 999999999)}"
        provider = f"{npi}^{rnd.choice(FAMILIES)}^{rnd.choice(GIVEN)}^^^Dr^MD^^NPI^L^^^NPI"
        payer_name, payer_id = rnd.choice(PAYERS).split("^")
        pid = (f"PID|1||{mrn}^^^NORTHDERM^MR~{rnd.randint(100000000, 999999999)}^^^USSSA^SS||"
               f"{rnd.choice(FAMILIES)}^{rnd.choice(GIVEN)}^Q||"
               f"19{rnd.randint(30, 99)}0{rnd.randint(1, 9)}1{rnd.randint(0, 9)}|"
               f"{rnd.choice('FM')}|||{rnd.randint(1, 999)} Example Way^^Springfield^IL^627{rnd.randint(10, 99)}^USA||"
               f"^PRN^PH^^1^217^555{rnd.randint(1000, 9999)}")
        in1 = f"IN1|1|{payer_id}|{payer_id}|{payer_name}|PO Box 1^^Hartford^CT^06101||||GRP{rnd.randint(100, 999)}" + \
              "|" * 27 + f"W{rnd.randint(10000000, 99999999)}"
        pid += (f"\rPD1|||NORTHDERM CLINIC^^1001|{provider}"
                f"\rNK1|1|{rnd.choice(FAMILIES)}^{rnd.choice(GIVEN)}|SPO^Spouse"
                f"|{rnd.randint(1, 999)} Example Way^^Springfield^IL^62701^USA"
                f"|^PRN^PH^^1^217^555{rnd.randint(1000, 9999)}")
        loc = rnd.choice(("NDMAIN", "NDEAST", "NDWEST"))
        pv1 = (f"PV1|1|O|{loc}^EXAM{rnd.randint(1, 9)}^^NORTHDERM||||{provider}|||DERM|||||||||V{n:08d}" + "|" * 25
               + stamp)
        if kind < 0.3:
            event = rnd.choice(("A04", "A08"))
            body = [f"EVN|{event}|{stamp}", pid, pv1, in1]
            mtype = f"ADT^{event}^ADT_A01"
        elif kind < 0.7:
            event = rnd.choices(("S12", "S14", "S15", "S26"), (6, 2, 2, 1))[0]
            minutes = rnd.choice((15, 20, 30, 45, 60))
            visit = rnd.choice(("NP^New patient^LOCAL", "FU^Follow up^LOCAL", "PROC^Procedure^LOCAL"))
            body = [f"SCH|PL{n}|FA{n}|||{'PTREQ^Patient request' if event == 'S15' else ''}||{visit}||{minutes}|min|"
                    f"^^{minutes}^{stamp}|||||{provider}|||||||||{'Cancelled' if event == 'S15' else 'Booked'}",
                    pid, pv1, "RGS|1|A", f"AIS|1|A|{rnd.choice(CPT)}^Service^CPT|{stamp}||{minutes}|min",
                    f"AIL|1|A|{loc}^^^NORTHDERM", f"AIP|1|A|{provider}|MD"]
            mtype = f"SIU^{event}^SIU_S12"
        else:
            body = [f"EVN|P03|{stamp}", pid, pv1]
            for line in range(1, rnd.randint(1, 5) + 1):
                code = rnd.choice(CPT)
                dx = "~".join(f"{d}^Dx^I10" for d in rnd.sample(DX, rnd.randint(1, 3)))
                body.append(f"FT1|{line}|TX{n}-{line}||{stamp[:8]}|{stamp[:8]}|CG|{code}^Service^CPT|||1|"
                            f"{rnd.randint(40, 400)}.00&USD||||||||{dx}|{provider}|||||{code}^Service^CPT|"
                            f"{rnd.choice(('', '25', '59', '59~XS'))}")
            body += [f"DG1|1||{rnd.choice(DX)}^Dx^I10", in1]
            mtype = "DFT^P03^DFT_P03"
        msh = f"MSH|^~\\&|DERMEHR|NORTHDERM|MSOHUB|MSO|{stamp}||{mtype}|C{seed}-{n:08d}|P|2.5.1|||AL|NE"
        out.append(("\r".join([msh, *body]) + "\r").encode())
    return out


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def timed(fn: Callable[[], int]) -> tuple[int, float]:
    """(count, wall seconds); the CPU seconds are kept too, as the per-core figure on a busy machine."""
    start, cpu = time.perf_counter(), time.process_time()
    done = fn()
    LAST_CPU[0] = time.process_time() - cpu
    return done, time.perf_counter() - start


LAST_CPU = [0.0]


# ------------------------------------------------------------------ the measurements
def parsers_alone(messages: list[bytes]) -> dict[str, float]:
    import warnings

    import hl7
    from hl7apy.parser import parse_message
    from hub_hl7v2 import er7

    texts = [m.decode() for m in messages]
    figures = {}
    sample = texts[:100]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        n, s = timed(lambda: sum(1 for t in sample if parse_message(t, find_groups=False)))
    figures["hl7apy parse_message"] = rate(n, s)
    sample = texts[:5000]
    n, s = timed(lambda: sum(1 for t in sample if hl7.parse(t)))
    figures["python-hl7 hl7.parse"] = rate(n, s)
    n, s = timed(lambda: sum(1 for t in sample if er7.parse(t)))
    figures["hub_hl7v2 er7.parse"] = rate(n, s)
    return figures


def normalize_connector_only(messages: list[bytes]) -> tuple[int, float, int]:
    from hub_hl7v2 import HL7v2Connector

    from hub.connector import Context

    connector = HL7v2Connector()
    context = Context(practice="northderm")
    records = 0

    def run() -> int:
        nonlocal records
        for data in messages:
            for envelope in connector.split(data):
                records += len(connector.normalize(envelope, context))
        return len(messages)

    n, s = timed(run)
    return n, s, records


def normalize_full(messages: list[bytes]) -> tuple[int, float]:
    from hub.pipeline.normalize import normalize_payload
    from hub.plugins import load_plugins

    plugins = load_plugins()

    def run() -> int:
        for data in messages:
            for result in normalize_payload(plugins, data, practice="northderm", connector="hl7v2"):
                if result.error is not None:
                    raise SystemExit(f"benchmark message failed: {result.error}")
        return len(messages)

    return timed(run)


def core_validation_only(messages: list[bytes]) -> tuple[int, float]:
    """``validate_record`` alone on the connector's records: how much of the core path is validation."""
    from hub_hl7v2 import HL7v2Connector

    from hub.connector import Context
    from hub.model.schemas import validate_record

    connector = HL7v2Connector()
    context = Context(practice="northderm")
    records = [r for data in messages for env in connector.split(data) for r in connector.normalize(env, context)]
    return timed(lambda: sum(1 for r in records if validate_record(r)) and len(messages))


STAGES: dict[str, float] = {}


def _instrumented() -> None:
    """Time the stages of the end-to-end path (wrappers cost about a microsecond a call)."""
    import functools

    from hub_hl7v2 import HL7v2Connector

    import hub.pipeline.intake as intake
    import hub.pipeline.normalize as normalize
    import hub.pipeline.process as process
    import hub.store.canonical as canonical

    def wrap(owner: object, name: str, label: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed_stage(*args: object, **kwargs: object) -> object:
            start = time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                STAGES[label] = STAGES.get(label, 0.0) + time.process_time() - start

        setattr(owner, name, timed_stage)

    wrap(intake.message_store, "save_messages", "message store save (dedup, raw bytes)")
    wrap(HL7v2Connector, "split", "connector split")
    wrap(HL7v2Connector, "normalize", "connector parse + map")
    wrap(normalize, "validate_record", "core validate_record (marshmallow)")
    wrap(process, "normalize_envelope", "core normalize_envelope (all of it)")
    wrap(canonical, "upsert_records", "canonical upsert + lineage")


def end_to_end(messages: list[bytes], folder: Path, batch: int) -> tuple[int, float]:
    from hub.pipeline.intake import Arrival, receive_many
    from hub.runtime import Runtime
    from hub.store.engine import writer
    from hub.store.practices import add_practice

    runtime = Runtime.create(database_url=f"sqlite:///{folder / 'hub.db'}", dispatcher="inline")
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "northderm", "North Derm")

    def run() -> int:
        errors = 0
        for start in range(0, len(messages), batch):
            arrivals = [Arrival(m, "bench") for m in messages[start:start + batch]]
            for receipts in receive_many(runtime, "northderm", arrivals, connector="hl7v2"):
                errors += sum(1 for r in receipts if not r.outcome.accepted)
        if errors:
            raise SystemExit(f"{errors} benchmark messages failed to ingest")
        return len(messages)

    return timed(run)


def baseline(messages: list[bytes], folder: Path, batch: int) -> tuple[int, float]:
    """Bare: decode, str.split, pick the key fields, batch-insert raw + fields into SQLite."""
    db = sqlite3.connect(folder / "bare.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY, body BLOB, control_id TEXT, type TEXT)")
    db.execute("CREATE TABLE rec (msg INTEGER, kind TEXT, source_id TEXT, patient TEXT, a TEXT, b TEXT)")

    def run() -> int:
        for start in range(0, len(messages), batch):
            raws, recs = [], []
            for i, data in enumerate(messages[start:start + batch], start=start):
                segments = data.decode().split("\r")
                msh = segments[0].split("|")
                raws.append((i, data, msh[9], msh[8]))
                patient = None
                for seg in segments[1:]:
                    f = seg.split("|")
                    if f[0] == "PID":
                        patient = f[3].split("~")[0].split("^")[0]
                        recs.append((i, "patient", patient, patient, f[5].split("^")[0], f[7]))
                    elif f[0] == "SCH":
                        recs.append((i, "appointment", f[2], patient, f[11].split("^")[3], f[25]))
                    elif f[0] == "FT1":
                        recs.append((i, "charge", f[2], patient, f[7].split("^")[0], f[11].split("&")[0]))
                    elif f[0] == "PV1" and len(f) > 19:
                        recs.append((i, "encounter", f[19], patient, f[7].split("^")[0], f[3].split("^")[0]))
            with db:
                db.executemany("INSERT INTO raw VALUES (?,?,?,?)", raws)
                db.executemany("INSERT INTO rec VALUES (?,?,?,?,?,?)", recs)
        return len(messages)

    try:
        return timed(run)
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="messages to generate (default 100000)")
    parser.add_argument("--batch", type=int, default=500, help="messages per receive_many call / insert batch")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--full-normalize-count", type=int, default=20_000,
                        help="messages for the full core normalize path (it is the slow one)")
    args = parser.parse_args()
    os.environ.setdefault("HUB_LOG_LEVEL", "WARNING")
    os.environ.setdefault("HUB_SQLITE_SYNCHRONOUS", "NORMAL")

    print(f"generating {args.count} messages ...", flush=True)
    messages = generate(args.count, args.seed)
    size = sum(len(m) for m in messages) / len(messages)
    print(f"  mean size {size:.0f} bytes; python {sys.version.split()[0]}; cpu cores {os.cpu_count()}")

    print("\nparsers alone (sample), messages/s:")
    for name, value in parsers_alone(messages).items():
        print(f"  {name:<32} {value:>10,.0f}")

    rows: list[tuple[str, int, float, float]] = []

    def measure(label: str, result: tuple[int, float]) -> tuple[float, float]:
        n, wall = result
        rows.append((label, n, wall, LAST_CPU[0]))
        return rate(n, wall), rate(n, LAST_CPU[0])

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        base, base_cpu = measure("baseline: str.split + SQLite batch insert", baseline(messages, folder, args.batch))
        n, s, records = normalize_connector_only(messages)
        conn_rate, conn_cpu = measure("(a) normalize, connector only", (n, s))
        subset = messages[:min(args.full_normalize_count, len(messages))]
        full_rate, full_cpu = measure("(a') normalize_payload, full core path", normalize_full(subset))
        measure("    of which core validate_record", core_validation_only(subset))
        _instrumented()
        e2e, e2e_cpu = measure("(b) end-to-end ingest, SQLite, inline", end_to_end(messages, folder, args.batch))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nresults ({len(messages)} messages, {records} records; one process; load average {load:.1f}),"
          " messages/s by wall clock and by this process's CPU time (per core):")
    print(f"  {'':<42} {'wall':>10} {'cpu':>10}   {'messages':>9}")
    for label, n, wall, cpu in rows:
        print(f"  {label:<42} {rate(n, wall):>10,.0f} {rate(n, cpu):>10,.0f}   {n:>9}")
    print(f"\n  (a) target >= 10,000/core: {'OK' if conn_cpu >= 10_000 else 'BELOW'} ({conn_cpu:,.0f} by CPU time)")
    print(f"  (b) target >= 3,000/s and within 10x of the baseline: "
          f"{'OK' if e2e >= 3000 and base / e2e <= 10 else 'BELOW'} ({e2e:,.0f}/s wall, {e2e_cpu:,.0f}/s CPU; "
          f"baseline {base / e2e:.1f}x faster by wall, {base_cpu / e2e_cpu:.1f}x by CPU)")
    print("\n  where (b) spends its CPU time, microseconds per message:")
    for label, seconds in sorted(STAGES.items(), key=lambda kv: -kv[1]):
        print(f"    {label:<40} {seconds / len(messages) * 1e6:>8.0f}")
    print(f"    {'(b) in all':<40} {rows[-1][3] / len(messages) * 1e6:>8.0f}")
    print(f"  connector only is {conn_cpu / full_cpu:.1f}x the full normalize path by CPU: the rest is the core's "
          "mapping, identity link and validation")

if __name__ == "__main__":
    main()
