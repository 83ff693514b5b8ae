"""CSV onboarding throughput: reading, dry-run scorecard and backfill, each beside a baseline of the same run.

    .venv/bin/python benchmarks/onboarding_backfill.py [--rows 20000] [--chunk-rows 5000]

Writes one appointment export of ``--rows`` rows (a quoted line break in every
fifth row, two date formats) and measures, on that same file:

- reading: Python's csv.reader over the file (the floor) beside the CSV
  connector's split + normalize + mapping + model validation;
- dry run: ``hub onboard check``'s scorecard (no findings) in rows per second;
- backfill: the file streamed in chunks through intake and inline processing into
  a fresh SQLite store, beside ``hub ingest`` of the same file (read whole, same
  pipeline) into another fresh store, alternating, best of two each; then the rerun of the finished backfill
  (every file already done), which must store nothing.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

HEADER = ["Appt ID", "MRN", "Provider", "Location", "Appt Date/Time", "Minutes", "Appt Type", "Status",
          "Cancel Reason", "Created", "Cancelled On"]


def write_export(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow(HEADER)
        for i in range(rows):
            day, minute = 1 + i % 28, i % 60
            when = f"03/{day:02d}/2025 09:{minute:02d} AM" if i % 2 else f"2025-03-{day:02d} 13:{minute:02d}"
            visit = "N\nP" if i % 5 == 0 else ["NP", "EST", "FU", "MOHS"][i % 4]
            status = ["Completed", "No Show", "Cancelled", "Scheduled"][i % 4]
            writer.writerow([f"A{i:07d}", f"M{i % 9000:05d}", ["DRALV", "DRBRE", "PACHE"][i % 3], "LP", when, "15",
                             visit, status, "SNOW" if status == "Cancelled" else "", "", ""])


def timed(label: str, rows: int, fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    print(f"  {label:<58} {seconds:8.2f} s  {rows / seconds:10,.0f} rows/s")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--chunk-rows", type=int, default=5000)
    args = parser.parse_args()
    os.environ["HUB_SQLITE_SYNCHRONOUS"] = "NORMAL"

    from hub_csv import CsvConnector

    from hub.mapping import load_mapping
    from hub.onboarding.backfill import Backfill
    from hub.onboarding.sources import check_files
    from hub.pipeline.ingest import ingest_paths
    from hub.plugins import load_plugins
    from hub.runtime import Runtime
    from hub.store.engine import writer
    from hub.store.practices import add_practice

    text = (ROOT / "mappings" / "example-practice.yaml").read_text()
    mapping = load_mapping(text)
    plugins = load_plugins()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        export = folder / "export" / "appointments.csv"
        export.parent.mkdir()
        write_export(export, args.rows)
        print(f"{args.rows:,} rows, {export.stat().st_size / 1e6:.1f} MB")

        print("reading")
        timed("baseline: csv.reader over the file", args.rows,
              lambda: sum(1 for _ in csv.reader(io.StringIO(export.read_text("utf-8-sig"), newline=""))))

        def connector_read() -> None:
            from hub.pipeline.normalize import normalize_envelope

            connector = CsvConnector()
            for envelope in connector.split(export.read_bytes(), origin="bench"):
                done = normalize_envelope(plugins, connector, envelope, practice="bench", mapping=mapping)
                assert done.error is None

        timed("CSV connector: split + normalize + map + validate", args.rows, connector_read)
        timed("dry run: onboard check scorecard (no findings)", args.rows,
              lambda: check_files(plugins, "bench", mapping, [str(export.parent)], findings=False))

        print("storing (SQLite, inline processing)")

        def runtime_for(name: str) -> Runtime:
            runtime = Runtime.create(database_url=f"sqlite:///{folder / name}", plugins=plugins, dispatcher="inline")
            with writer(runtime.engine).begin() as conn:
                add_practice(conn, "bench", "Bench", mapping=text)
            return runtime

        # alternate the two, twice each on fresh stores, and keep the better time of each (the first run
        # of a process pays for warming caches that the second does not)
        best: dict[str, float] = {}
        fill = None
        for round_ in (1, 2):
            base = runtime_for(f"ingest{round_}.db")
            start = time.perf_counter()
            ingest_paths(base, "bench", (str(export),), connector="csv")
            best["ingest"] = min(best.get("ingest", 1e9), time.perf_counter() - start)
            fill = runtime_for(f"backfill{round_}.db")
            job = Backfill(fill, "bench", chunk_rows=args.chunk_rows, stream_above=0)
            start = time.perf_counter()
            job.run([str(export.parent)])
            best["backfill"] = min(best.get("backfill", 1e9), time.perf_counter() - start)
            assert job.result.counts["accepted"] == args.rows, job.result.counts
        for label, key in (("baseline: hub ingest of the file (read whole), best of 2", "ingest"),
                           (f"hub onboard backfill, chunks of {args.chunk_rows} rows, best of 2", "backfill")):
            print(f"  {label:<58} {best[key]:8.2f} s  {args.rows / best[key]:10,.0f} rows/s")
        assert fill is not None
        again = Backfill(fill, "bench", chunk_rows=args.chunk_rows, stream_above=0)
        timed("rerun of the finished backfill (nothing to do)", args.rows, lambda: again.run([str(export.parent)]))
        assert again.result.skipped == 1 and sum(again.result.counts.values()) == 0


if __name__ == "__main__":
    main()
