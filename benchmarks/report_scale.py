"""How the consolidated report scales: ingest with rollup upkeep, then the full report, on SQLite and PostgreSQL.

    python benchmarks/report_scale.py                       # 1M and 10M appointments, both stores
    python benchmarks/report_scale.py --sizes 100000,1000000 --stores sqlite

For each size it generates synthetic appointments (with their charges and remittances) month by
month for 10 practices over 36 months, writes them through the store's bulk path
(``hub.store.canonical.upsert_records``) in batches of one practice-month, inside
``rollups.tracking`` exactly as the pipeline does (the touched cells are marked dirty), and prints:

- ingest seconds (the upserts) and the seconds the rollup upkeep adds, as a share of ingest;
- the catch-up: the recompute of the dirty cells after the load, as the background refresh (or
  ``hub report refresh``) does it, in transactions of as many practice-months as fit in
  ``rollups.REFRESH_BUDGET_SECONDS`` on SQLite and ``rollups.CATCH_UP_BUDGET_SECONDS`` on PostgreSQL
  (where no ingest waits for them), also per million appointments (``catch-up s/M``) beside the
  raw-scan baseline scaled the same way (``raw s/M``), with the number of transactions (``tx``), the
  most cells one took (``cells``), the longest one in seconds (``longest``: how long an ingest
  marking one of its cells could have waited) and the machine's load average as the catch-up ended
  (``load``: one minute);
- the full consolidated report (every KPI, by site and month, plus the MSO total and the site
  median) in seconds, best of three, beside a baseline measured in the same run: the same
  grouping computed by scanning the raw appointment and charge rows (a handful of KPIs only);
- the same report by site and ISO week;
- beside each of the catch-up and the reports, the CPU seconds of this process (the machine may be
  shared: wall-clock seconds are noisy; with SQLite, the store's work is in-process and counted);
- the growth factor of the report time from the smallest to the largest size.

Targets: full report under 1 s at 10M appointments on both stores, growth under 2x from 1M to
10M, rollup upkeep no more than 20 % of ingest time, catch-up at most 45 s per million
appointments on PostgreSQL.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.errors import ValidationError
from hub.plugins import load_plugins
from hub.reports import compute_report, rollups
from hub.store import canonical
from hub.store.engine import dispose_engines, get_engine, writer
from hub.store.practices import add_practice

PRACTICES = [f"site-{i:02d}" for i in range(10)]
MONTHS = [f"{y}-{m:02d}" for y in (2023, 2024, 2025) for m in range(1, 13)]
LINES = ("dermatology", "cosmetic", "mohs", "pediatric")
STATUSES = ("fulfilled", "noshow", "cancelled", "booked")
STATUS_WEIGHTS = (78, 7, 10, 5)
CLASSES = ("commercial", "medicare", "medicaid", "self_pay", None)
PG_ADMIN = os.environ.get("HUB_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def practice_month(rnd: random.Random, practice: str, month: str, count: int, patients: int,
                   first_id: int) -> list[dict[str, Any]]:
    """One practice-month of appointments with their charges and remittances."""
    out: list[dict[str, Any]] = []
    year, mon = int(month[:4]), int(month[5:7])
    for n in range(first_id, first_id + count):
        day = dt.date(year, mon, rnd.randint(1, 28))
        status = rnd.choices(STATUSES, STATUS_WEIGHTS)[0]
        line = rnd.choice(LINES)
        patient = f"P{rnd.randrange(patients)}"
        provider = f"DR{rnd.randrange(20)}"
        location = f"L{rnd.randrange(5)}"
        start = f"{day.isoformat()}T{rnd.randint(8, 16):02d}:00:00-05:00"
        booked = day - dt.timedelta(days=rnd.randint(0, 60))
        out.append({"kind": "appointment", "practice": practice, "source_id": f"A{n}", "patient_source_id": patient,
                    "provider_source_id": provider, "location_source_id": location, "start": start,
                    "duration_min": rnd.choice((15, 30, 45)), "service_line": line,
                    "visit_category": rnd.choice(("consult", "procedure", "followup")), "status": status,
                    "booked_at": f"{booked.isoformat()}T09:00:00-05:00"})
        if status != "fulfilled":
            continue
        cents = rnd.randint(5_000, 60_000)
        posted = day + dt.timedelta(days=rnd.randint(0, 7))
        out.append({"kind": "charge", "practice": practice, "source_id": f"C{n}", "patient_source_id": patient,
                    "provider_source_id": provider, "location_source_id": location, "service_date": day,
                    "posted_on": posted, "amount": Decimal(cents) / 100, "service_line": line,
                    "financial_class": rnd.choice(CLASSES), "procedure_code": "99213"})
        if rnd.random() < 0.8:
            denied = rnd.random() < 0.08
            co = Decimal(rnd.randint(0, cents // 3)) / 100
            paid = Decimal(0) if denied else Decimal(rnd.randint(0, cents - int(co * 100))) / 100
            out.append({"kind": "remittance", "practice": practice, "source_id": f"R{n}", "charge_source_id": f"C{n}",
                        "paid_amount": paid, "adjustment_amount": co, "denied": denied,
                        "adjustments": [{"group": "CO", "reason": "45", "amount": str(co)}],
                        "paid_on": posted + dt.timedelta(days=rnd.randint(10, 60))})
    return out


def patients_of(practice: str, patients: int, shared: int) -> list[dict[str, Any]]:
    # a tenth of each practice's patients are also seen elsewhere in the MSO (one enterprise id)
    return [{"kind": "patient", "practice": practice, "source_id": f"P{i}", "sex": "unknown",
             "enterprise_id": f"E{i}" if i < shared else f"{practice}-E{i}"} for i in range(patients)]


def write_batch(engine: sa.Engine, records: list[dict[str, Any]], with_rollups: bool) -> tuple[float, float]:
    """One ingest batch as the pipeline writes it: the upsert inside ``rollups.tracking``, which marks
    the touched cells dirty (the upkeep ingest pays); recomputing them waits for the next report."""
    items = [(r, None) for r in records]
    t0 = time.perf_counter()
    with writer(engine).begin() as conn:
        t1 = time.perf_counter()
        if with_rollups:
            with rollups.tracking(conn, items):
                t2 = time.perf_counter()
                canonical.upsert_records(conn, items)
                t3 = time.perf_counter()
        else:
            t2 = time.perf_counter()
            canonical.upsert_records(conn, items)
            t3 = time.perf_counter()
        t4 = time.perf_counter()
    t5 = time.perf_counter()
    ingest = (t1 - t0) + (t3 - t2) + (t5 - t4)
    upkeep = (t2 - t1) + (t4 - t3)
    return ingest, upkeep


def load(engine: sa.Engine, size: int, seed: int = 1) -> tuple[float, float, int]:
    rnd = random.Random(seed)
    per_cell = max(1, size // (len(PRACTICES) * len(MONTHS)))
    patients = max(10, per_cell * len(MONTHS) // 5)
    with writer(engine).begin() as conn:
        for slug in PRACTICES:
            add_practice(conn, slug, slug.title())
    ingest = upkeep = 0.0
    for slug in PRACTICES:
        i, u = write_batch(engine, patients_of(slug, patients, patients // 10), True)
        ingest, upkeep = ingest + i, upkeep + u
    records = 0
    next_id = 0
    for n, month in enumerate(MONTHS):
        if n % 6 == 0:
            analyze(engine)
        for slug in PRACTICES:
            batch = practice_month(rnd, slug, month, per_cell, patients, next_id)
            next_id += per_cell
            records += len(batch)
            i, u = write_batch(engine, batch, True)
            ingest, upkeep = ingest + i, upkeep + u
    return ingest, upkeep, records


def analyze(engine: sa.Engine) -> None:
    """Refresh the planner's statistics, as autovacuum does (test servers often run without it)."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE"))


RAW_SCAN = {
    "appointments": "SELECT practice, substr(start, 1, 7), COUNT(*), "
                    "SUM(CASE WHEN status = 'noshow' THEN 1 ELSE 0 END), "
                    "SUM(CASE WHEN status = 'fulfilled' THEN 1 ELSE 0 END) FROM appointments GROUP BY 1, 2",
    "charges": "SELECT practice, {month}, SUM(amount), COUNT(*) FROM charges GROUP BY 1, 2",
}


def raw_scan(engine: sa.Engine) -> float:
    month = "substr(CAST(service_date AS VARCHAR), 1, 7)" if engine.dialect.name == "postgresql" \
        else "substr(service_date, 1, 7)"
    t0 = time.perf_counter()
    with engine.connect() as conn:
        for sql in RAW_SCAN.values():
            conn.execute(sa.text(sql.format(month=month))).all()
    return time.perf_counter() - t0


@functools.cache
def plugins() -> Any:
    """Loaded once, as a hub process does (the API and dashboard answer with the runtime's plugins)."""
    return load_plugins()


def time_report(engine: sa.Engine, by: tuple[str, ...] = ("site", "month")) -> tuple[float, float, int]:
    """Best of three: wall seconds, CPU seconds of this process (the machine is shared), rows."""
    best, best_cpu, rows = float("inf"), float("inf"), 0
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        report = compute_report(engine, by=by, plugins=plugins())
        best, best_cpu = min(best, time.perf_counter() - t0), min(best_cpu, time.process_time() - c0)
        rows = len(report.rows)
    return best, best_cpu, rows


def weekly_report(engine: sa.Engine) -> tuple[float, float]:
    """The full report by site and ISO week, where the engine knows weeks (else nan)."""
    try:
        best, cpu, _ = time_report(engine, ("site", "week"))
    except ValidationError:  # an engine without week periods
        return float("nan"), float("nan")
    return best, cpu


def same_days_cost(engine: sa.Engine) -> str:
    """The comparison of the month in progress (hub.reports.same_days): keeping both sides for the 15th (November
    1-15 and December 1-15) for every practice (once a day); then each side alone, as ``keep`` writes it again
    after the refresh recomputed that month's cells (a late remittance in November; any new record of December,
    the current month), beside that refresh; and the report by site and month with the comparison beside the
    same report with none (best of three each)."""
    from hub.reports import same_days

    today, later = dt.date(2025, 12, 15), dt.date(2026, 1, 15)  # December in progress; then every month complete
    t = time.perf_counter()
    same_days.keep(engine, today)
    keep_s = time.perf_counter() - t
    sides = []
    for month in ("2025-11", "2025-12"):  # the refresh drops the month's same-days rows with the rest: again
        t = time.perf_counter()
        with writer(engine).begin() as conn:
            rollups.refresh(conn, {(p, month) for p in PRACTICES})
        t2 = time.perf_counter()
        same_days.keep(engine, today)
        sides.append((month, t2 - t, time.perf_counter() - t2))

    def best(day: dt.date) -> float:
        out = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            compute_report(engine, by=("site", "month"), plugins=plugins(), today=day)
            out = min(out, time.perf_counter() - t0)
        return out

    with_s, without_s = best(today), best(later)
    again = "; ".join(f"{m}: keep {k:.2f} s after its refresh {r:.2f} s" for m, r, k in sides)
    return (f"same days: keep {keep_s:.2f} s for {len(PRACTICES)} practices, both sides ({again}); "
            f"report with the comparison {with_s:.3f} s, without {without_s:.3f} s")


def on_each_store(stores: str, run: Callable[[str], None]) -> None:
    """``run(url)`` on a throwaway store of each of ``stores`` (comma-separated: sqlite, postgres)."""
    for store in stores.split(","):
        with tempfile.TemporaryDirectory() as folder:
            url, drop = open_store(store, Path(folder))
            try:
                run(url)
            finally:
                drop()


def best_of(fn: Callable[[], None], runs: int = 3) -> tuple[float, float]:
    """Best wall-clock seconds and best CPU seconds of this process over ``runs`` calls (SQLite's work is
    in-process: on a shared machine its CPU seconds are the steadier figure)."""
    walls, cpus = [], []
    for _ in range(runs):
        began, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - began)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def open_store(store: str, workdir: Path) -> tuple[str, Any]:
    if store == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:6]}.db"
        return f"sqlite:///{path}", lambda: path.unlink(missing_ok=True)
    name = f"hub_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        dispose_engines()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="appointment counts, comma-separated")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds a catch-up transaction may take (default: rollups.REFRESH_BUDGET_SECONDS on "
                             "SQLite, rollups.CATCH_UP_BUDGET_SECONDS on PostgreSQL)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    plugins()  # before the long load: a plugin installed meanwhile must not change the run
    os.environ.setdefault("HUB_SQLITE_SYNCHRONOUS", "NORMAL")
    print(f"{'store':<9}{'appts':>10}{'records':>10}{'ingest s':>10}{'rollup s':>10}{'upkeep':>8}"
          f"{'catch-up s':>11}{'cpu s':>7}{'report s':>10}{'cpu s':>7}{'raw scan s':>12}{'rows':>6}"
          f"{'by week s':>10}{'cpu s':>7}{'catch-up s/M':>13}{'raw s/M':>9}{'tx':>6}{'cells':>6}{'longest':>9}"
          f"{'load':>6}",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for store in args.stores.split(","):
            times = []
            for size in sizes:
                url, cleanup = open_store(store, Path(tmp))
                try:
                    engine = get_engine(url)
                    ingest, upkeep, records = load(engine, size)
                    commits: list[tuple[int, float]] = []  # (cells, seconds) of each refresh transaction
                    t, c = time.perf_counter(), time.process_time()
                    # as the background refresh does it: transactions of as many cells as fit in its budget
                    rollups.refresh_dirty(engine, budget=args.budget,
                                          on_commit=lambda n, s, out=commits: out.append((n, s)))
                    catchup, catchup_cpu = time.perf_counter() - t, time.process_time() - c
                    load_average = os.getloadavg()[0]  # the machine may be shared: its load over the last minute
                    longest = max((seconds for _, seconds in commits), default=0.0)
                    report_s, report_cpu, rows = time_report(engine)
                    week_s, week_cpu = weekly_report(engine)
                    scan_s = raw_scan(engine)
                    times.append(report_s)
                    print(f"{store:<9}{size:>10}{records:>10}{ingest:>10.1f}{upkeep:>10.1f}"
                          f"{upkeep / ingest:>8.0%}{catchup:>11.1f}{catchup_cpu:>7.1f}{report_s:>10.3f}"
                          f"{report_cpu:>7.3f}{scan_s:>12.3f}{rows:>6}{week_s:>10.3f}{week_cpu:>7.3f}"
                          f"{catchup * 1e6 / size:>13.1f}{scan_s * 1e6 / size:>9.2f}{len(commits):>6}"
                          f"{max((n for n, _ in commits), default=0):>6}{longest:>9.2f}{load_average:>6.1f}",
                          flush=True)
                    print(f"  {store} {size}: {same_days_cost(engine)}", flush=True)
                finally:
                    dispose_engines()
                    cleanup()
            if len(times) > 1:
                print(f"{store}: report time growth {sizes[0]} -> {sizes[-1]}: {times[-1] / times[0]:.2f}x",
                      flush=True)


if __name__ == "__main__":
    main()
