"""FHIR ingest benchmark: Bundles of realistic size, end to end into a fresh SQLite store.

    .venv/bin/python benchmarks/fhir_ingest.py [--bundles 40] [--patients 50] [--no-validate] [--profile N]

Each Bundle (type collection) holds, per synthetic patient, a Patient, an Appointment, an
Encounter, a Claim with two lines and an ExplanationOfBenefit adjudicating both: five
resources. The Bundles go through the real pipeline (``hub.pipeline.intake.receive_many``,
inline dispatch): message store, fhir connector (validation, mapping), core record
validation, canonical upsert. Printed beside it, in the same run: ``json.loads`` and
``orjson.loads`` of the same bytes. Figures are resources per second by wall clock and by this
process's CPU time (``time.process_time``: the per-core figure on a shared machine), then where
the end-to-end run spends its CPU time, in microseconds per resource, stage by stage (each stage
counted without the stages it calls, so the lines add up; the garbage collector's time is a
line of its own). ``--profile N`` runs the end-to-end pass once more under cProfile and prints
its N most expensive functions.

``--no-validate`` is the backfill mode for trusted history: it sets ``HUB_FHIR_VALIDATE=0``
(the same as ``validate: false`` in the practice's fhir connector settings), so resources are
mapped without the R4 model check.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import gc
import json
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from hub.pipeline.process import BatchResult

CLAIM_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]}


def synthetic_bundle(b: int, patients: int) -> bytes:
    entries = []
    for p in range(patients):
        pid, n = f"pat-{b}-{p}", f"{b}-{p}"
        day = f"2025-{1 + (p % 12):02d}-{1 + (p % 28):02d}"
        entries += [
            {"resourceType": "Patient", "id": pid, "identifier": [{"system": "urn:synthetic:mrn", "value": f"MRN{n}"}],
             "name": [{"family": f"Synthetic{p}", "given": ["Test"]}], "gender": ("female", "male")[p % 2],
             "birthDate": f"19{50 + p % 50}-0{1 + p % 9}-1{p % 9}", "address": [{"postalCode": f"9{p % 10000:04d}"}]},
            {"resourceType": "Appointment", "id": f"appt-{n}", "status": ("booked", "fulfilled", "noshow")[p % 3],
             "serviceType": [{"coding": [{"code": ("NEWPT", "FOLLOW", "PHYS")[p % 3]}]}],
             "start": f"{day}T09:{p % 60:02d}:00-05:00", "end": f"{day}T10:{p % 60:02d}:00-05:00",
             "created": f"{day}T08:00:00-05:00",
             "participant": [{"actor": {"reference": f"Patient/{pid}"}, "status": "accepted"},
                             {"actor": {"reference": f"Practitioner/prov-{p % 7}"}, "status": "accepted"},
                             {"actor": {"reference": f"Location/loc-{p % 3}"}, "status": "accepted"}]},
            {"resourceType": "Encounter", "id": f"enc-{n}", "status": "finished",
             "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
             "subject": {"reference": f"Patient/{pid}"}, "appointment": [{"reference": f"Appointment/appt-{n}"}],
             "participant": [{"individual": {"reference": f"Practitioner/prov-{p % 7}"}}],
             "period": {"start": f"{day}T09:05:00-05:00", "end": f"{day}T09:40:00-05:00"}},
            {"resourceType": "Claim", "id": f"clm-{n}", "status": "active", "use": "claim", "created": day,
             "type": CLAIM_TYPE,
             "patient": {"reference": f"Patient/{pid}"}, "provider": {"reference": f"Practitioner/prov-{p % 7}"},
             "insurer": {"display": "Synthetic Health Plan"}, "priority": {"coding": [{"code": "normal"}]},
             "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": f"Coverage/cov-{n}"}}],
             "diagnosis": [{"sequence": 1, "diagnosisCodeableConcept": {"coding": [{"code": "Z00.00"}]}}],
             "item": [{"sequence": 1, "productOrService": {"coding": [{"code": "99213"}]}, "servicedDate": day,
                       "quantity": {"value": 1}, "net": {"value": 125.0, "currency": "USD"},
                       "encounter": [{"reference": f"Encounter/enc-{n}"}]},
                      {"sequence": 2, "productOrService": {"coding": [{"code": "36415"}]}, "servicedDate": day,
                       "quantity": {"value": 1}, "net": {"value": 18.5, "currency": "USD"}}]},
            {"resourceType": "ExplanationOfBenefit", "id": f"eob-{n}", "status": "active", "use": "claim",
             "type": CLAIM_TYPE,
             "patient": {"reference": f"Patient/{pid}"}, "created": f"{day}T12:00:00-05:00",
             "insurer": {"display": "Synthetic Health Plan"}, "provider": {"reference": f"Practitioner/prov-{p % 7}"},
             "claim": {"reference": f"Claim/clm-{n}"}, "outcome": "complete",
             "insurance": [{"focal": True, "coverage": {"reference": f"Coverage/cov-{n}"}}],
             "payment": {"date": day, "amount": {"value": 92.0, "currency": "USD"}},
             "item": [{"sequence": s, "productOrService": {"coding": [{"code": c}]}, "adjudication": [
                 {"category": {"coding": [{"code": "submitted"}]}, "amount": {"value": amt, "currency": "USD"}},
                 {"category": {"coding": [{"code": "eligible"}]}, "amount": {"value": amt - 10, "currency": "USD"}},
                 {"category": {"coding": [{"code": "copay"}]}, "amount": {"value": 5.0, "currency": "USD"}},
                 {"category": {"coding": [{"code": "benefit"}]}, "amount": {"value": amt - 15, "currency": "USD"}}]}
                 for s, c, amt in ((1, "99213", 125.0), (2, "36415", 18.5))]},
        ]
    bundle = {"resourceType": "Bundle", "id": f"bench-{b}", "type": "collection",
              "entry": [{"fullUrl": f"http://synthetic.example/fhir/{r['resourceType']}/{r['id']}", "resource": r}
                        for r in entries]}
    return orjson.dumps(bundle)


# ------------------------------------------------------------------ where the CPU time goes
STAGES: dict[str, float] = {}
_OPEN: list[float] = []  # CPU seconds spent in the inner stages of each open stage


@contextlib.contextmanager
def stage(label: str) -> Iterator[None]:
    """Count CPU time to ``label``, less what inner stages count (so the stages add up)."""
    start = time.process_time()
    _OPEN.append(0.0)
    try:
        yield
    finally:
        spent = time.process_time() - start
        inner = _OPEN.pop()
        STAGES[label] = STAGES.get(label, 0.0) + spent - inner
        if _OPEN:
            _OPEN[-1] += spent


GARBAGE = "garbage collection (wherever it struck)"
_COLLECTION_START = [0.0]


def collector_timer(phase: str, info: dict[str, Any]) -> None:
    """The cyclic collector runs in whichever stage happens to allocate: its time is a stage of
    its own, taken out of the stage it struck in (so that one's figure stays comparable)."""
    if phase == "start":
        _COLLECTION_START[0] = time.process_time()
        return
    spent = time.process_time() - _COLLECTION_START[0]
    STAGES[GARBAGE] = STAGES.get(GARBAGE, 0.0) + spent
    if _OPEN:
        _OPEN[-1] += spent


def instrument() -> Callable[[], None]:
    """Wrap the stages of the end-to-end path with timers (about a microsecond a call); returns the undo.

    A function the core no longer has is skipped: its time shows under "rest"."""
    import hub_fhir.connector
    from hub_fhir import bundle

    import hub.pipeline.normalize as normalize
    import hub.pipeline.process as process
    import hub.reports.rollups as rollups
    import hub.store.canonical as canonical
    import hub.store.messages as messages
    from hub.mapping import Mapping

    undo: list[tuple[object, str, object]] = []

    def wrap(owner: object, name: str, label: str) -> None:
        original = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
        if original is None and isinstance(owner, type):
            original = getattr(owner, name, None)
        if original is None:
            print(f"  (not timed: {getattr(owner, '__name__', owner)}.{name} is gone; it counts under rest)")
            return

        @functools.wraps(original)  # type: ignore[arg-type]
        def timed(*args: Any, **kwargs: Any) -> Any:
            with stage(label):
                return original(*args, **kwargs)  # type: ignore[operator]

        undo.append((owner, name, owner.__dict__.get(name) if isinstance(owner, type) else original))
        setattr(owner, name, timed)

    connector_class = hub_fhir.FhirConnector
    wrap(bundle, "load", "fhir: json parse (orjson)")
    wrap(hub_fhir.connector, "validate_resource", "fhir: validation (R4B models)")  # where the connector calls them
    wrap(hub_fhir.connector, "validate_lenient", "fhir: validation (R4B models)")
    for method in ("split", "parse", "to_canonical", "normalize"):
        wrap(connector_class, method, "fhir: split, entries, mapping")
    wrap(process, "normalize_envelope", "core: normalize (hooks, records)")
    wrap(Mapping, "apply", "core: practice mapping apply")
    wrap(normalize, "validate_record", "core: validate_record (marshmallow)")
    wrap(canonical, "upsert_records", "core: canonical upsert + lineage")
    for name in ("save_messages", "load_for_processing", "mark_processed", "mark_error"):
        wrap(messages, name, "core: message store")
    for name in ("cells_of", "cells_written", "mark_dirty"):  # called by the report upkeep's store hooks
        wrap(rollups, name, "core: rollup marking")

    def restore() -> None:
        for owner, name, original in reversed(undo):
            if original is None:
                delattr(owner, name)  # a method the class inherited
            else:
                setattr(owner, name, original)

    return restore


# ------------------------------------------------------------------ the run
def measured(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def line(label: str, count: int, wall: float, cpu: float, note: str = "") -> None:
    cpu_text = f"{count / cpu:>10,.0f}" if cpu == cpu else f"{'-':>10}"  # NaN: spread over processes
    print(f"  {label:<34} {count / wall:>10,.0f} {cpu_text}   {note}")


def fresh_runtime(folder: Path, name: str) -> Any:
    from hub.runtime import Runtime
    from hub.store.engine import writer
    from hub.store.practices import add_practice

    runtime = Runtime.create(database_url=f"sqlite:///{folder / name}", dispatcher="inline")
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, "bench", "Benchmark Practice")
    return runtime


def with_jobs(folder: Path, payloads: list[bytes], jobs: int, expected_rows: int) -> tuple[str, float, float, str]:
    """End to end again, as ``hub ingest --jobs N``: batches of a few Bundles go to N worker processes
    (a Bundle carries hundreds of resources, so a batch is a few messages, not the default 100)."""
    from hub.pipeline.dispatch import PoolDispatcher
    from hub.pipeline.intake import Arrival, receive_many
    from hub.store.canonical import count_records

    os.environ["HUB_BATCH_SIZE"] = "2"
    runtime = fresh_runtime(folder, f"jobs{jobs}.db")
    pool = PoolDispatcher(runtime, jobs)
    runtime.dispatcher = pool
    try:
        def run() -> BatchResult:
            receive_many(runtime, "bench", [Arrival(d, f"bench-{i}") for i, d in enumerate(payloads)],
                         connector="fhir")
            return pool.drain()

        done, wall, _ = measured(run)
    finally:
        pool.close()
    with runtime.engine.connect() as conn:
        stored = sum(count_records(conn, "bench").values())
    if done.errors or stored != expected_rows:
        raise SystemExit(f"--jobs {jobs}: {len(done.errors)} errors, {stored} rows (expected {expected_rows})")
    return f"end to end, hub ingest --jobs {jobs}", wall, float("nan"), f"-> {stored:,} rows"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundles", type=int, default=40)
    parser.add_argument("--patients", type=int, default=50, help="patients per Bundle (5 resources each)")
    parser.add_argument("--no-validate", action="store_true", help="backfill mode: HUB_FHIR_VALIDATE=0")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2,
                        help="worker processes for a second end-to-end pass, as hub ingest --jobs (1: none)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="profile the end-to-end pass too and print its N most expensive functions")
    args = parser.parse_args()
    if args.no_validate:
        os.environ["HUB_FHIR_VALIDATE"] = "0"
    os.environ.setdefault("HUB_SQLITE_SYNCHRONOUS", "NORMAL")
    os.environ.setdefault("HUB_LOG_LEVEL", "WARNING")

    from hub.connector import Context
    from hub.pipeline.intake import Arrival, receive_many
    from hub.store.canonical import count_records

    payloads = [synthetic_bundle(b, args.patients) for b in range(args.bundles)]
    resources = args.bundles * args.patients * 5
    size = sum(map(len, payloads))
    print(f"{args.bundles} Bundles x {args.patients * 5} resources = {resources:,} resources, "
          f"{size / 1e6:.1f} MB; validation {'off (--no-validate)' if args.no_validate else 'on'}; "
          f"python {sys.version.split()[0]}")

    def ingest(runtime: Any) -> list[Any]:
        arrivals = [Arrival(d, f"bench-{i}") for i, d in enumerate(payloads)]
        return receive_many(runtime, "bench", arrivals, connector="fhir")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        runtime = fresh_runtime(folder, "bench.db")
        connector = runtime.plugins.connectors.get("fhir")
        context = Context(practice="bench")
        for envelope in connector.split(synthetic_bundle(-1, args.patients)):  # builds the model classes
            connector.normalize(envelope, context)

        # nothing parsed is kept from one measurement to the next: a bigger heap slows the collector
        rows: list[tuple[str, float, float, str]] = []
        _, wall, cpu = measured(lambda: sum(1 for d in payloads if json.loads(d)))
        rows.append(("baseline: json.loads", wall, cpu, ""))
        _, wall, cpu = measured(lambda: sum(1 for d in payloads if orjson.loads(d)))
        rows.append(("baseline: orjson.loads", wall, cpu, ""))
        records, wall, cpu = measured(lambda: sum(len(connector.normalize(env, context))
                                                  for d in payloads for env in connector.split(d)))
        rows.append(("fhir connector only (no store)", wall, cpu, f"-> {records:,} records"))

        restore = instrument()
        gc.callbacks.append(collector_timer)
        receipts, wall, cpu = measured(lambda: ingest(runtime))
        gc.callbacks.remove(collector_timer)
        restore()
        statuses = {r.status for batch in receipts for r in batch}
        with runtime.engine.connect() as conn:
            stored = sum(count_records(conn, "bench").values())
        rows.append(("end to end (pipeline, SQLite)", wall, cpu, f"-> {stored:,} rows, {sorted(statuses)}"))
        e2e_wall, e2e_cpu = wall, cpu
        if args.jobs > 1:
            rows.append(with_jobs(folder, payloads, args.jobs, stored))

        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"\nresources/s (load average {load:.1f} on {os.cpu_count()} cores):")
        print(f"  {'':<34} {'wall':>10} {'cpu':>10}")
        for label, wall, cpu, note in rows:
            line(label, resources, wall, cpu, note)

        print("\nwhere the end-to-end run spends its CPU time, microseconds per resource:")
        STAGES[GARBAGE] = STAGES.pop(GARBAGE, 0.0)  # listed last
        for label, seconds in STAGES.items():
            print(f"  {label:<40} {seconds / resources * 1e6:>7.1f}  {100 * seconds / e2e_cpu:5.1f} %")
        rest = e2e_cpu - sum(STAGES.values())
        print(f"  {'rest (transactions, dispatch, answers)':<40} {rest / resources * 1e6:>7.1f}  "
              f"{100 * rest / e2e_cpu:5.1f} %")
        print(f"  {'end to end in all':<40} {e2e_cpu / resources * 1e6:>7.1f}")
        fhir = sum(s for label, s in STAGES.items() if label.startswith("fhir"))
        core = e2e_cpu - fhir - STAGES[GARBAGE]
        print(f"  the fhir connector {100 * fhir / e2e_cpu:.0f} %, the core {100 * core / e2e_cpu:.0f} %, "
              f"the garbage collector {100 * STAGES[GARBAGE] / e2e_cpu:.0f} %")

        target = 20_000 if args.no_validate else 4_000
        verdict = "meets" if resources / e2e_wall >= target else "BELOW"
        print(f"\ntarget {target:,} resources/s end to end: {verdict} ({resources / e2e_wall:,.0f}/s wall, "
              f"{resources / e2e_cpu:,.0f}/s CPU)")
        if args.jobs > 1:
            jobs_wall = rows[-1][1]
            print(f"  with --jobs {args.jobs}: {'meets' if resources / jobs_wall >= target else 'BELOW'} "
                  f"({resources / jobs_wall:,.0f}/s wall; the machine's cores, not one)")

        if args.profile:
            profiler = cProfile.Profile()
            second = fresh_runtime(folder, "profiled.db")
            profiler.runcall(ingest, second)
            print(f"\nprofile of the end-to-end pass (fresh store), top {args.profile} by own time:")
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(args.profile)
            print(f"top {args.profile} by cumulative time:")
            stats.sort_stats("cumulative").print_stats(args.profile)

        if statuses != {"accepted"}:
            print("some messages were not accepted", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
