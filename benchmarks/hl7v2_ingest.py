"""HL7 v2 ingest benchmark: normalize and end-to-end ingest, beside a bare baseline from the same run.

    .venv/bin/python benchmarks/hl7v2_ingest.py [--count 100000] [--batch 2000] [--seed 7]

A generated, realistic v2.5.1 mix (ADT A04/A08 with IN1, SIU S12/S14/S15/S26, DFT
P03 with 1–5 FT1; about 1 KB each, synthetic patients) is measured as:

- parsers alone: hl7apy ``parse_message``, python-hl7 ``hl7.parse`` and this
  connector's tokenizer (on a sample, to place the figures side by side);
- normalize, connector only: split + parse + to_canonical (no storage);
- normalize, full core path: ``hub.pipeline.normalize.normalize_payload`` (adds the
  mapping, identity link and marshmallow validation);
- end-to-end ingest: ``hub.pipeline.intake.receive_many`` with the inline dispatcher
  into a fresh SQLite store (raw message saved, records upserted, lineage);
- end-to-end with ``--jobs N``: the same, with ``hub ingest --jobs N``'s worker processes;
- baseline: read, ``str.split``, pick the fields the connector maps (identifiers, names, dates,
  codes, amounts, providers, locations: no unescaping, typing or checks), batch-insert the raw
  messages and one row per record into SQLite; and the narrower loop of earlier runs, which
  picks a handful of key fields per record. The baselines run at the hub's SQLite ``synchronous``
  level (HUB_SQLITE_SYNCHRONOUS, FULL unless set: the hub's default), so both pay the same syncs.

Figures are messages per second on one process (one core), but for ``--jobs``. Each end-to-end run
and the baseline first take ``WARM_UP`` messages into a store of their own, untimed: what a process
does once (importing the modules ingest loads when first used, compiling its statements) is not a
cost per message.

The baseline and (b), whose ratio is the target, run first and batch about batch, taking turns (each
into its own store, as before): run one after the other, on a virtual machine whose speed drifts by 10 %
and more from one minute to the next, the same code gave ratios from 3.4x to 4.4x; the later one also ran
in a process that had done everything above it.
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
from typing import Any

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
    n, s = timed(lambda: len([t for t in sample if er7.parse(t)]))
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
# the breakdown's stages: (label, nested under the stage above it); the top-level ones do not overlap
STAGE_ORDER = (
    ("connector split (intake)", False),
    ("message store save (dedup, raw bytes)", False),
    ("message load for processing", False),
    ("core normalize_envelope (all of it)", False),
    ("connector parse + map", True),
    ("core map + validate (written checks)", True),
    ("canonical upsert + lineage", False),
    ("of which SQLite executing its statements", True),
    ("of which the lineage rows' statement", True),
    ("report upkeep hooks (dirty cells)", False),
    ("message status update", False),
    ("commits (WAL writes, disk sync)", False),
)
INGEST_TOTAL = "receive_many in all"


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
    wrap(HL7v2Connector, "split", "connector split (intake)")
    wrap(HL7v2Connector, "normalize", "connector parse + map")
    wrap(normalize, "_mapped_and_validated", "core map + validate (written checks)")
    wrap(process, "normalize_envelope", "core normalize_envelope (all of it)")
    wrap(canonical, "upsert_records", "canonical upsert + lineage")
    # the statements canonical.py hands the driver (records by plan, lineage): the rest of the upsert is Python
    import sqlalchemy as sa

    run_sql = sa.Connection.exec_driver_sql
    sql_label, lineage_label = "of which SQLite executing its statements", "of which the lineage rows' statement"

    @functools.wraps(run_sql)
    def timed_sql(self: sa.Connection, *args: Any, **kwargs: Any) -> Any:
        if sys._getframe(1).f_globals.get("__name__") != canonical.__name__:
            return run_sql(self, *args, **kwargs)
        start = time.process_time()
        try:
            return run_sql(self, *args, **kwargs)
        finally:
            spent = time.process_time() - start
            STAGES[sql_label] = STAGES.get(sql_label, 0.0) + spent
            if str(args[0]).startswith("INSERT INTO lineage"):
                STAGES[lineage_label] = STAGES.get(lineage_label, 0.0) + spent

    sa.Connection.exec_driver_sql = timed_sql  # type: ignore[method-assign]
    # the commits: SQLite writes the pages the transaction changed to the WAL there, and syncs it; a cost
    # of how many pages a batch touches (of an index on random keys, most of its pages), not of a statement
    wrap(sa.engine.default.DefaultDialect, "do_commit", "commits (WAL writes, disk sync)")
    # the report-upkeep plugin's hub_records_storing / hub_records_stored, called through _store_hook
    wrap(process, "_store_hook", "report upkeep hooks (dirty cells)")
    wrap(process.message_store, "load_for_processing", "message load for processing")
    wrap(process.message_store, "mark_processed", "message status update")
    wrap(intake, "receive_many", INGEST_TOTAL)


WARM_UP = 200  # messages run through each end-to-end path and the baseline before its clock starts


# A measured path made ready to run (its store fresh, warmed up): ``run(start)`` takes the messages of the
# batch from ``start`` and returns how many it did; ``finish()`` checks and closes it, untimed.
Runner = tuple[Callable[[int], int], Callable[[], None]]


def end_to_end_runner(messages: list[bytes], folder: Path, batch: int, jobs: int = 1) -> Runner:
    """``receive_many`` as ``hub ingest`` calls it; ``jobs`` > 1 is ``hub ingest --jobs``: worker processes."""
    from hub.pipeline.dispatch import PoolDispatcher
    from hub.pipeline.intake import Arrival, receive_many
    from hub.runtime import Runtime
    from hub.store.engine import writer
    from hub.store.practices import add_practice

    def fresh(name: str) -> Runtime:
        created = Runtime.create(database_url=f"sqlite:///{folder / name}", dispatcher="inline")
        with writer(created.engine).begin() as conn:
            add_practice(conn, "northderm", "North Derm")
        return created

    # warm-up, untimed, into a store of its own: the modules ingest imports when first used (the report
    # upkeep plugins, the connector's mapping, ...) and the statements' first compilation, once a process
    warm = fresh(f"warm{jobs}.db")
    for receipts in receive_many(warm, "northderm", [Arrival(m, "bench") for m in messages[:WARM_UP]],
                                 connector="hl7v2", together=True):
        if not all(r.outcome.accepted for r in receipts):
            raise SystemExit("a warm-up message failed to ingest")
    warm.engine.dispose()
    runtime = fresh(f"hub{jobs}.db")
    pool = PoolDispatcher(runtime, jobs) if jobs > 1 else None
    if pool is not None:
        runtime.dispatcher = pool
    errors = 0

    def run(start: int) -> int:
        nonlocal errors
        arrivals = [Arrival(m, "bench") for m in messages[start:start + batch]]
        # as hub ingest calls it: inline, saved and processed in one transaction per batch
        for receipts in receive_many(runtime, "northderm", arrivals, connector="hl7v2", together=True):
            errors += sum(1 for r in receipts if not r.outcome.accepted)
        if pool is not None and start + batch >= len(messages):  # the last batch: done when the workers are
            errors += len(pool.drain().errors)
        return len(arrivals)

    def finish() -> None:
        try:
            if errors:
                raise SystemExit(f"{errors} benchmark messages failed to ingest")
            with runtime.engine.connect() as conn:
                processed = conn.exec_driver_sql("SELECT COUNT(*) FROM messages WHERE status = 'processed'").scalar()
            if processed != len(messages):
                raise SystemExit(f"{processed} of {len(messages)} messages processed")
        finally:
            if pool is not None:
                pool.close()
            runtime.engine.dispose()

    return run, finish


def end_to_end(messages: list[bytes], folder: Path, batch: int, jobs: int = 1) -> tuple[int, float]:
    return run_alone(end_to_end_runner(messages, folder, batch, jobs), len(messages), batch)


def run_alone(runner: Runner, count: int, batch: int) -> tuple[int, float]:
    """(messages, wall seconds) of one runner over every batch; ``LAST_CPU`` its CPU seconds."""
    run, finish = runner
    try:
        return timed(lambda: sum(run(start) for start in range(0, count, batch)))
    finally:
        finish()


def interleaved(runners: dict[str, Runner], count: int, batch: int) -> dict[str, tuple[float, float]]:
    """Each runner's (wall, CPU) seconds over every batch, the runners taking turns batch by batch (their
    order reversed every other batch), so that a machine whose speed drifts during the run (a shared
    virtual machine's does, by 10 % and more from one minute to the next) slows each of them alike."""
    spent = {label: [0.0, 0.0] for label in runners}
    order = list(runners)
    try:
        for number, start in enumerate(range(0, count, batch)):
            for label in (order if number % 2 == 0 else order[::-1]):
                run = runners[label][0]
                wall, cpu = time.perf_counter(), time.process_time()
                run(start)
                spent[label][0] += time.perf_counter() - wall
                spent[label][1] += time.process_time() - cpu
    finally:
        for _, finish in runners.values():
            finish()
    return {label: (wall, cpu) for label, (wall, cpu) in spent.items()}


def _pick(seg: list[str], field: int, component: int = 1) -> str | None:
    if field >= len(seg):
        return None
    value = seg[field].split("~")[0].split("^")
    return value[component - 1] or None if component <= len(value) else None


def _bare_records(i: int, data: bytes) -> tuple[tuple[object, ...], list[tuple[object, ...]]]:
    """The fields the connector maps for this mix, picked with str.split: no escapes, types, dedup or checks."""
    segments = data.decode().split("\r")
    msh = segments[0].split("|")
    raw = (i, data, msh[9], msh[8], msh[3], msh[4])
    recs: list[tuple[object, ...]] = []
    mrn = None
    for line in segments[1:]:
        f = line.split("|")
        name = f[0]
        if name == "PID":
            ids = [r.split("^") for r in f[3].split("~")]
            mrn = ids[0][0]
            recs.append(("patient", mrn, None, "|".join(f"{x[3]}:{x[0]}:{x[4]}" for x in ids), _pick(f, 5, 1),
                         _pick(f, 5, 2), f[7], f[8], _pick(f, 11, 5), _pick(f, 13, 7), None, None, None))
        elif name == "IN1":
            recs.append(("coverage", f"{mrn}:coverage:{_pick(f, 3)}", mrn, _pick(f, 4), _pick(f, 36), f[1],
                         None, None, None, None, None, None, None))
        elif name in ("PV1", "AIP", "FT1"):
            fields = {"PV1": (7, 8, 9, 17), "AIP": (3,), "FT1": (20, 21)}[name]
            for n in fields:
                if n < len(f) and f[n]:
                    p = f[n].split("^")
                    recs.append(("provider", p[0], None, p[0] if p[12:13] == ["NPI"] else None, p[1], p[2],
                                 None, None, None, None, None, None, None))
            if name == "PV1":
                recs.append(("location", _pick(f, 3), None, _pick(f, 3, 9) or _pick(f, 3, 4), None, None, None,
                             None, None, None, None, None, None))
                recs.append(("encounter", _pick(f, 19), mrn, _pick(f, 7), _pick(f, 3), _pick(f, 44), None, None,
                             _pick(f, 10), None, None, None, None))
            elif name == "FT1":
                recs.append(("charge", _pick(f, 2), mrn, _pick(f, 20), _pick(f, 7), f[26] if len(f) > 26 else None,
                             f[10], f[11].split("&")[0], "|".join(d.split("^")[0] for d in f[19].split("~")),
                             f[4], f[5], f[6], msh[10]))
        elif name == "SCH":
            recs.append(("appointment", _pick(f, 2), mrn, _pick(f, 16), None, _pick(f, 11, 4), f[9],
                         _pick(f, 7), f[25], _pick(f, 6), None, None, None))
        elif name == "AIL":
            recs.append(("location", _pick(f, 3), None, _pick(f, 3, 4), None, None, None, None, None, None, None,
                         None, None))
    return raw, recs


def _synchronous() -> str:
    """The SQLite ``synchronous`` level the hub runs at in this benchmark (HUB_SQLITE_SYNCHRONOUS)."""
    return os.environ.get("HUB_SQLITE_SYNCHRONOUS", "FULL").upper()


def baseline_runner(messages: list[bytes], folder: Path, batch: int) -> Runner:
    """Bare: decode, str.split, pick the fields the connector maps, batch-insert raw messages and records."""
    def run_on(db: sqlite3.Connection, start: int, end: int) -> int:
        raws: list[tuple[object, ...]] = []
        recs: list[tuple[object, ...]] = []
        for i, data in enumerate(messages[start:end], start=start):
            raw, picked = _bare_records(i, data)
            raws.append(raw)
            recs.extend((i, *r) for r in picked)
        with db:
            db.executemany("INSERT INTO raw VALUES (?,?,?,?,?,?)", raws)
            db.executemany(f"INSERT INTO rec VALUES ({', '.join(['?'] * 14)})", recs)
        return len(raws)

    def fresh(name: str) -> sqlite3.Connection:
        db = sqlite3.connect(folder / name)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={_synchronous()}")  # the hub's own setting: durability alike
        db.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY, body BLOB, control_id TEXT, type TEXT, app TEXT, "
                   "fac TEXT)")
        db.execute("CREATE TABLE rec (msg INTEGER, kind TEXT, source_id TEXT, patient TEXT, "
                   + ", ".join(f"c{n} TEXT" for n in range(10)) + ")")
        return db

    warm = fresh("bare_warm.db")  # warmed up as the hub's paths are (WARM_UP), into a store of its own
    run_on(warm, 0, WARM_UP)
    warm.close()
    db = fresh("bare.db")
    return (lambda start: run_on(db, start, min(start + batch, len(messages)))), db.close


def baseline_key_fields(messages: list[bytes], folder: Path, batch: int) -> tuple[int, float]:
    """The narrower bare loop: a handful of key fields per record (kept to compare with earlier runs)."""
    db = sqlite3.connect(folder / "bare_keys.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={_synchronous()}")
    db.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY, body BLOB, control_id TEXT, type TEXT)")
    db.execute("CREATE TABLE rec (msg INTEGER, kind TEXT, source_id TEXT, patient TEXT, a TEXT, b TEXT)")

    def run() -> int:
        for start in range(0, len(messages), batch):
            raws: list[tuple[object, ...]] = []
            recs: list[tuple[object, ...]] = []
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
    from hub.pipeline.ingest import GROUP_FILES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="messages to generate (default 100000)")
    # hub ingest's group of files (one message each here): its one transaction, and the baseline's
    parser.add_argument("--batch", type=int, default=GROUP_FILES,
                        help=f"messages per receive_many call / insert batch (default {GROUP_FILES}, as hub ingest)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2,
                        help="worker processes for (b2), as hub ingest --jobs (default: the cores)")
    parser.add_argument("--full-normalize-count", type=int, default=20_000,
                        help="messages for the full core normalize path (it is the slow one)")
    args = parser.parse_args()
    os.environ.setdefault("HUB_LOG_LEVEL", "WARNING")
    os.environ.setdefault("HUB_SQLITE_SYNCHRONOUS", "FULL")  # the hub's default: a power cut loses nothing
    from hub.runtime import tune_garbage_collector

    tune_garbage_collector()  # as every hub process runs (hub.runtime.Runtime.create), (a) included

    print(f"generating {args.count} messages ...", flush=True)
    messages = generate(args.count, args.seed)
    size = sum(len(m) for m in messages) / len(messages)
    print(f"  mean size {size:.0f} bytes; python {sys.version.split()[0]}; cpu cores {os.cpu_count()}; "
          f"SQLite synchronous={_synchronous()} for the hub and the baselines alike")

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
        # the target's two figures first, while the process has done nothing else, and batch about batch
        # (``interleaved``): measured one after the other they drifted apart with the machine's speed
        both = interleaved({"baseline": baseline_runner(messages, folder, args.batch),
                            "hub": end_to_end_runner(messages, folder, args.batch)}, len(messages), args.batch)
        LAST_CPU[0] = both["baseline"][1]
        base, base_cpu = measure("baseline: str.split, same fields, insert", (len(messages), both["baseline"][0]))
        measure("  (narrower: key fields only)", baseline_key_fields(messages, folder, args.batch))
        n, s, records = normalize_connector_only(messages)
        conn_rate, conn_cpu = measure("(a) normalize, connector only", (n, s))
        subset = messages[:min(args.full_normalize_count, len(messages))]
        full_rate, full_cpu = measure("(a') normalize_payload, full core path", normalize_full(subset))
        measure("    of which core validate_record", core_validation_only(subset))
        par = rate(*end_to_end(messages, folder, args.batch, jobs=args.jobs)) if args.jobs > 1 else 0.0
        if par:
            rows.append((f"(b2) end-to-end, hub ingest --jobs {args.jobs}", len(messages), len(messages) / par,
                         float("nan")))
        LAST_CPU[0] = both["hub"][1]
        e2e, e2e_cpu = measure("(b) end-to-end ingest, SQLite, inline", (len(messages), both["hub"][0]))
        # the breakdown comes from a second pass with timers around each stage (which cost a little
        # themselves), so that (b) above is measured bare
        _instrumented()
        end_to_end(subset, folder, args.batch, jobs=0)
        breakdown_count = len(subset)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nresults ({len(messages)} messages, {records} records; one process; load average {load:.1f}),"
          " messages/s by wall clock and by this process's CPU time (per core); the baseline and (b) batch"
          " about batch, taking turns:")
    print(f"  {'':<42} {'wall':>10} {'cpu':>10}   {'messages':>9}")
    for label, n, wall, cpu in rows:
        cpu_text = f"{rate(n, cpu):>10,.0f}" if cpu == cpu else f"{'-':>10}"  # NaN: spread over processes
        print(f"  {label:<42} {rate(n, wall):>10,.0f} {cpu_text}   {n:>9}")
    print(f"\n  (a) target >= 10,000/core: {'OK' if conn_cpu >= 10_000 else 'BELOW'} ({conn_cpu:,.0f} by CPU time)")
    print(f"  (b) target: within 4x of the same-fields baseline: "
          f"{'OK' if base / e2e <= 4 else 'BELOW'} ({e2e:,.0f}/s wall, {e2e_cpu:,.0f}/s CPU; "
          f"baseline {base / e2e:.1f}x faster by wall, {base_cpu / e2e_cpu:.1f}x by CPU)")
    if par:
        print(f"  (b2) target: --jobs {args.jobs} faster than one process: {'OK' if par > e2e else 'BELOW'} "
              f"({par:,.0f}/s wall, {par / e2e:.2f}x (b); load average {load:.1f} on {os.cpu_count()} cores: "
              "a figure for idle cores only when the load is well under their count)")
    print(f"\n  where (b) spends its CPU time, microseconds per message ({breakdown_count} messages, timed apart):")
    total = STAGES.get(INGEST_TOTAL, 0.0)
    for label, nested in STAGE_ORDER:
        per_message = STAGES.get(label, 0.0) / breakdown_count * 1e6
        print(f"    {'  ' if nested else ''}{label:<{40 if nested else 42}} {per_message:>8.0f}")
    top = sum(STAGES.get(label, 0.0) for label, nested in STAGE_ORDER if not nested)
    print(f"    {'the rest (intake plan, SQL glue)':<42} {(total - top) / breakdown_count * 1e6:>8.0f}")
    print(f"    {'all of it, timed apart':<42} {total / breakdown_count * 1e6:>8.0f}")
    print(f"    {'(b) in all, untimed run':<42} {e2e_cpu and 1e6 / e2e_cpu:>8.0f}")
    print(f"  connector only is {conn_cpu / full_cpu:.1f}x the full normalize path by CPU: the rest is the core's "
          "mapping, identity link and validation")

if __name__ == "__main__":
    main()
