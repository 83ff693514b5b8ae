"""What service-line attribution and provider keys by NPI cost the rollup refresh, on SQLite and PostgreSQL.

    python benchmarks/attribution_refresh.py                          # 5 practices x 12 months, both stores
    python benchmarks/attribution_refresh.py --per-cell 500 --stores sqlite

It stores synthetic visits (5 practices x 12 months of 2025, ``--per-cell`` appointments each, every
one with an encounter, two charge lines and a remittance per line; the encounter or the appointment
names the service line, the charges none; providers by local id with a provider record carrying the
NPI), then recomputes every (practice, month) cell (``rollups.refresh``), best of three, and prints it
beside a baseline measured in the same run on the same store: the same refresh with the charges' own
service line and the providers' local ids (the rollups as they were before, no joins to encounters,
appointments or provider records). The machine's load (1-minute average) is printed beside each figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from report_scale import best_of, on_each_store

from hub.model.tables import RECORD_TABLES
from hub.reports import rollups
from hub.reports import visits as visit_rollup
from hub.store.engine import dispose_engines, get_engine, writer
from hub.store.practices import add_practice

PRACTICES = [f"site-{i}" for i in range(5)]
MONTHS = [f"2025-{m:02d}" for m in range(1, 13)]
LINES = ("medical_dermatology", "mohs_surgical", "cosmetic_aesthetics")


def _rows(rnd: random.Random, practice: str, month: str, per_cell: int) -> dict[str, list[dict[str, object]]]:
    now = dt.datetime.now(dt.UTC)
    out: dict[str, list[dict[str, object]]] = {"appointment": [], "encounter": [], "charge": [], "remittance": []}
    for i in range(per_cell):
        day = dt.date(int(month[:4]), int(month[5:]), 1 + rnd.randrange(28))
        start = f"{day.isoformat()}T09:00:00-05:00"
        visit, provider, line = f"{month}-{i}", f"DR{i % 7}", rnd.choice(LINES)
        common = {"practice": practice, "patient_source_id": f"P{rnd.randrange(2000)}",
                  "provider_source_id": provider, "updated_at": now}
        out["appointment"].append({**common, "source_id": visit, "start": start, "duration_min": 20,
                                   "status": "fulfilled", "service_line": line if i % 2 else None})
        out["encounter"].append({**common, "source_id": visit, "appointment_source_id": visit, "start": start,
                                 "status": "finished", "service_line": None if i % 2 else line})
        for n in (1, 2):
            out["charge"].append({**common, "source_id": f"{visit}-{n}", "encounter_source_id": visit,
                                  "service_date": day, "procedure_code": "99213", "units": 1,
                                  "amount": Decimal("110.00")})
            out["remittance"].append({"practice": practice, "source_id": f"R{visit}-{n}", "updated_at": now,
                                      "charge_source_id": f"{visit}-{n}", "paid_amount": Decimal("60.00"),
                                      "adjustment_amount": Decimal("50.00"), "paid_on": day})
    return out


@contextmanager
def _as_before() -> Iterator[None]:
    """The baseline: the charge's own service line, the provider's local id."""
    saved = (rollups.charge_joins, rollups.charge_service_line, rollups.provider_key, visit_rollup.provider_key)
    rollups.charge_joins = lambda alias="c": ""
    rollups.charge_service_line = lambda alias="c": f"COALESCE({alias}.service_line, '')"
    local = lambda alias, npi_columns=(): f"COALESCE({alias}.provider_source_id, '')"  # noqa: E731
    rollups.provider_key = visit_rollup.provider_key = local
    try:
        yield
    finally:
        rollups.charge_joins, rollups.charge_service_line, rollups.provider_key, visit_rollup.provider_key = saved



def run(url: str, per_cell: int) -> None:
    rnd = random.Random(5)
    engine = get_engine(url)
    with writer(engine).begin() as conn:
        for slug in PRACTICES:
            add_practice(conn, slug, slug)
            conn.execute(sa.insert(RECORD_TABLES["provider"]), [
                {"practice": slug, "source_id": f"DR{n}", "npi": f"{1000000000 + n}", "family_name": f"Doe{n}",
                 "updated_at": dt.datetime.now(dt.UTC)} for n in range(7)])
    for practice in PRACTICES:
        for month in MONTHS:
            with writer(engine).begin() as conn:
                for kind, rows in _rows(rnd, practice, month, per_cell).items():
                    conn.execute(sa.insert(RECORD_TABLES[kind]), rows)
    with writer(engine).begin() as conn:
        conn.execute(sa.text("ANALYZE"))  # as autovacuum would have: a plan without statistics is any plan
    cells = {(p, m) for p in PRACTICES for m in MONTHS}

    def refresh() -> None:
        with writer(engine).begin() as conn:
            rollups.refresh(conn, cells)

    with _as_before():
        base = best_of(refresh)
        with engine.connect() as conn:
            before = conn.execute(sa.text("SELECT COUNT(DISTINCT service_line) FROM report_cells WHERE "
                                          "grain = 'site' AND charges_cents > 0")).scalar()
    load_base = os.getloadavg()[0]
    attributed = best_of(refresh)
    load = os.getloadavg()[0]
    with engine.connect() as conn:
        after = conn.execute(sa.text("SELECT COUNT(DISTINCT service_line) FROM report_cells WHERE "
                                     "grain = 'site' AND charges_cents > 0")).scalar()
    print(f"{engine.dialect.name:<10} {len(cells) * per_cell:>7} visits, {len(cells) * per_cell * 2:>7} charge "
          f"lines  refresh of {len(cells)} cells: baseline (own line, local ids) {base[0]:6.2f} s, CPU {base[1]:.2f} s "
          f"(load {load_base:.1f})  attributed, by NPI {attributed[0]:6.2f} s, CPU {attributed[1]:.2f} s "
          f"(load {load:.1f})  +{(attributed[0] / base[0] - 1) * 100:.0f} % (CPU "
          f"+{(attributed[1] / base[1] - 1) * 100:.0f} %)  "
          f"[charge service lines: {before} before, {after} after]")
    dispose_engines()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--per-cell", type=int, default=1000, help="appointments per practice-month")
    parser.add_argument("--stores", default="sqlite,postgres")
    args = parser.parse_args()
    on_each_store(args.stores, lambda url: run(url, args.per_cell))


if __name__ == "__main__":
    main()
