"""What pricing charge lines by work RVU costs the rollup refresh, on SQLite and PostgreSQL.

    python benchmarks/rvu_refresh.py                                  # 240,000 charge lines, both stores
    python benchmarks/rvu_refresh.py --per-cell 1000 --stores sqlite

It stores synthetic charge lines (5 practices x 12 months of 2025, ``--per-cell`` lines each; procedure
codes drawn from 400, a tenth of them unknown to the table, a fifth of the lines with a modifier, 1 to 3
units) and an RVU table of CMS's size (two years of 16,000 codes with a base row, a tenth of them with
26 and TC rows as well), then recomputes every (practice, month) cell (``rollups.refresh``), best of
three, and prints it beside a baseline measured in the same run on the same store: the same refresh with
the RVU joins left out and the price NULL (the rollups as they were before work RVUs; the two
measures still written, as constants). The rest of each cell's sources are empty, so the difference is the whole cost
of the look-up on charge lines; a real cell also recomputes its appointments, visits and remittances.
The machine's load (1-minute average) is printed beside each figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from report_scale import best_of, on_each_store

from hub.model.tables import RECORD_TABLES
from hub.reports import rollups
from hub.reports.rvus import RvuRow, import_rvus
from hub.store.engine import dispose_engines, get_engine, writer
from hub.store.practices import add_practice

PRACTICES = [f"site-{i}" for i in range(5)]
MONTHS = [f"2025-{m:02d}" for m in range(1, 13)]


def _table(rnd: random.Random) -> list[RvuRow]:
    rows = []
    for year in (2025, 2026):
        for n in range(16000):
            code = f"{10000 + n * 5:05d}"
            value = rnd.randrange(0, 3000) * 10
            rows.append(RvuRow(year, code, "", value))
            if n % 10 == 0:
                rows += [RvuRow(year, code, "26", value // 2), RvuRow(year, code, "TC", 0)]
    return rows


def _charges(rnd: random.Random, per_cell: int) -> Iterator[list[dict[str, object]]]:
    known = [f"{10000 + n * 5:05d}" for n in range(0, 16000, 44)][:360]  # every tenth of them has 26/TC rows
    codes = known + [f"J{n:04d}" for n in range(40)]
    now = dt.datetime.now(dt.UTC)
    for practice in PRACTICES:
        for month in MONTHS:
            batch = []
            for i in range(per_cell):
                day = dt.date(int(month[:4]), int(month[5:]), 1 + rnd.randrange(28))
                modifiers = rnd.choice([["26"], ["TC"], ["25"], ["59"]]) if rnd.random() < 0.2 else []
                batch.append({"practice": practice, "source_id": f"{month}-{i}", "service_date": day,
                              "procedure_code": rnd.choice(codes), "modifiers": modifiers,
                              "units": rnd.randint(1, 3), "amount": "123.45", "provider_source_id": f"DR{i % 7}",
                              "service_line": "dermatology", "updated_at": now})
            yield batch


@contextmanager
def _without_lookup() -> Iterator[None]:
    """The baseline: no RVU joins, the price NULL (nothing priced)."""
    joins, price = rollups.Sql.rvu_joins, rollups.Sql.work_rvu_milli
    rollups.Sql.rvu_joins = lambda self, alias: ""  # type: ignore[method-assign]
    rollups.Sql.work_rvu_milli = lambda self, alias: "CAST(NULL AS INTEGER)"  # type: ignore[method-assign]
    try:
        yield
    finally:
        rollups.Sql.rvu_joins, rollups.Sql.work_rvu_milli = joins, price  # type: ignore[method-assign]



def run(url: str, per_cell: int) -> None:
    rnd = random.Random(5)
    engine = get_engine(url)
    charges = RECORD_TABLES["charge"]
    with writer(engine).begin() as conn:
        for slug in PRACTICES:
            add_practice(conn, slug, slug)
        import_rvus(conn, _table(rnd), source="bench")
    for batch in _charges(rnd, per_cell):
        with writer(engine).begin() as conn:
            conn.execute(sa.insert(charges), batch)
    cells = {(p, m) for p in PRACTICES for m in MONTHS}

    def refresh() -> None:
        with writer(engine).begin() as conn:
            rollups.refresh(conn, cells)

    with _without_lookup():
        base = best_of(refresh)[0]
    load_base = os.getloadavg()[0]
    priced = best_of(refresh)[0]
    load = os.getloadavg()[0]
    with engine.connect() as conn:
        lines, priced_lines, milli = conn.execute(sa.text(
            "SELECT SUM(charge_lines), SUM(rvu_lines), SUM(work_rvu_milli) FROM report_cells WHERE grain = 'site'"
        )).one()
    total = len(cells) * per_cell
    print(f"{engine.dialect.name:<10} {total:>8} lines  refresh of {len(cells)} cells: "
          f"baseline (no look-up) {base:6.2f} s (load {load_base:.1f})  with work RVUs {priced:6.2f} s "
          f"(load {load:.1f})  +{(priced / base - 1) * 100:.0f} %  "
          f"[{priced_lines}/{lines} lines priced, {int(milli or 0) / 1000:,.2f} work RVUs]")
    dispose_engines()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--per-cell", type=int, default=4000, help="charge lines per practice-month")
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args()
    on_each_store(args.stores, lambda url: run(url, args.per_cell))


if __name__ == "__main__":
    main()
