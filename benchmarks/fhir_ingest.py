"""FHIR ingest benchmark: Bundles of realistic size, end to end into a fresh SQLite store.

    .venv/bin/python benchmarks/fhir_ingest.py [--bundles 40] [--patients 50] [--no-validate]

Each Bundle (type collection) holds, per synthetic patient, a Patient, an Appointment, an
Encounter, a Claim with two lines and an ExplanationOfBenefit adjudicating both: five
resources. The Bundles go through the real pipeline (``hub.pipeline.intake.receive_many``,
inline dispatch): message store, fhir connector (validation, mapping), core record
validation, canonical upsert. Printed beside it, in the same run: ``json.loads`` and
``orjson.loads`` of the same bytes, and the time spent in each stage.

``--no-validate`` is the backfill mode for trusted history: it sets ``HUB_FHIR_VALIDATE=0``
(the same as ``validate: false`` in the practice's fhir connector settings), so resources are
mapped without the R4 model check.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson

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


def time_stages(connector) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Wrap the pipeline's stages with timers (for the breakdown of the end-to-end run)."""
    import hub.pipeline.normalize as normalize_module
    import hub.pipeline.process as process_module

    spent = {"fhir connector": 0.0, "core validate_record": 0.0, "canonical upsert": 0.0}

    def timed(name, fn):  # type: ignore[no-untyped-def]
        def run(*args, **kw):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                spent[name] += time.perf_counter() - start
        return run

    connector.normalize = timed("fhir connector", connector.normalize)
    normalize_module.validate_record = timed("core validate_record", normalize_module.validate_record)
    process_module.canonical.upsert_records = timed("canonical upsert", process_module.canonical.upsert_records)
    return spent


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>10,.0f} /s  ({seconds:.3f} s)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundles", type=int, default=40)
    parser.add_argument("--patients", type=int, default=50, help="patients per Bundle (5 resources each)")
    parser.add_argument("--no-validate", action="store_true", help="backfill mode: HUB_FHIR_VALIDATE=0")
    args = parser.parse_args()
    if args.no_validate:
        os.environ["HUB_FHIR_VALIDATE"] = "0"
    os.environ.setdefault("HUB_SQLITE_SYNCHRONOUS", "NORMAL")

    from hub.connector import Context
    from hub.model.schemas import validate_record
    from hub.pipeline.intake import Arrival, receive_many
    from hub.runtime import Runtime
    from hub.store.canonical import count_records
    from hub.store.engine import writer
    from hub.store.practices import add_practice

    payloads = [synthetic_bundle(b, args.patients) for b in range(args.bundles)]
    resources = args.bundles * args.patients * 5
    size = sum(map(len, payloads))
    print(f"{args.bundles} Bundles x {args.patients * 5} resources = {resources:,} resources, "
          f"{size / 1e6:.1f} MB; validation {'off (--no-validate)' if args.no_validate else 'on'}")

    t = time.perf_counter()
    for data in payloads:
        json.loads(data)
    print(f"baseline json.loads      {rate(resources, time.perf_counter() - t)}")
    t = time.perf_counter()
    for data in payloads:
        orjson.loads(data)
    print(f"baseline orjson.loads    {rate(resources, time.perf_counter() - t)}")

    with tempfile.TemporaryDirectory() as tmp:
        runtime = Runtime.create(database_url=f"sqlite:///{Path(tmp) / 'bench.db'}", dispatcher="inline")
        with writer(runtime.engine).begin() as conn:
            add_practice(conn, "bench", "Benchmark Practice")
        connector = runtime.plugins.connectors.get("fhir")

        # the stages on their own, for where the time goes
        context = Context(practice="bench")
        t = time.perf_counter()
        records = []
        for data in payloads:
            envelope = connector.split(data)[0]
            records.extend(connector.normalize(envelope, context))
        connector_seconds = time.perf_counter() - t
        print(f"fhir connector only      {rate(resources, connector_seconds)}  -> {len(records):,} records")
        t = time.perf_counter()
        for record in records:
            validate_record(record)
        core_seconds = time.perf_counter() - t
        print(f"core validate_record     {rate(resources, core_seconds)}  ({len(records) / core_seconds:,.0f} "
              "records/s)")

        spent = time_stages(connector)
        t = time.perf_counter()
        receipts = receive_many(runtime, "bench", [Arrival(d, f"bench-{i}") for i, d in enumerate(payloads)],
                                connector="fhir")
        seconds = time.perf_counter() - t
        statuses = {r.status for batch in receipts for r in batch}
        with runtime.engine.connect() as conn:
            stored = sum(count_records(conn, "bench").values())
        print(f"end to end (pipeline)    {rate(resources, seconds)}  -> {stored:,} rows stored, {statuses}")
        for stage, stage_seconds in spent.items():
            print(f"  of which {stage:<22} {stage_seconds:6.3f} s  {100 * stage_seconds / seconds:5.1f} %")
        rest = seconds - sum(spent.values())
        print(f"  of which {'the rest (store, ...)':<22} {rest:6.3f} s  {100 * rest / seconds:5.1f} %")
        target = 20_000 if args.no_validate else 4_000
        verdict = "meets" if resources / seconds >= target else "BELOW"
        print(f"target {target:,} resources/s end to end: {verdict}")
        if statuses != {"accepted"}:
            print("some messages were not accepted", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
