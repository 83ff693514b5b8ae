"""MSO-supplied costs per practice × service line × month (for margin by service line).

The CSV has a header with ``practice``, ``service_line``, ``month`` (``YYYY-MM``) and
``cost`` (decimal dollars). A file is checked whole before anything is stored; a
practice × service line × month given again replaces the earlier figure.
"""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal, InvalidOperation

import sqlalchemy as sa

from hub.errors import ValidationError
from hub.model.tables import MoneyCents, practices
from hub.reports import rollups
from hub.reports.tables import report_costs

REQUIRED = ("practice", "service_line", "month", "cost")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def parse_costs(text: str, *, source: str) -> list[dict[str, object]]:
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise ValidationError(f"{source}: the header lacks {', '.join(missing)} (needs {', '.join(REQUIRED)})")
    rows: dict[tuple[str, str, str], int] = {}
    for line, row in enumerate(reader, start=2):
        practice, line_name, month = (row["practice"] or "").strip(), (row["service_line"] or "").strip(), \
            (row["month"] or "").strip()
        if not practice or not line_name:
            raise ValidationError(f"{source}: line {line}: practice and service_line are required")
        if not _MONTH.match(month):
            raise ValidationError(f"{source}: line {line}: month must be YYYY-MM, got {month!r}")
        try:
            cost = Decimal((row["cost"] or "").strip())
        except InvalidOperation:
            raise ValidationError(f"{source}: line {line}: cost is not a number: {row['cost']!r}") from None
        if not cost.is_finite() or cost < 0:
            raise ValidationError(f"{source}: line {line}: cost must be zero or more")
        rows[(practice, line_name, month)] = MoneyCents.cents(cost)  # half-up, as every amount
    return [{"practice": p, "service_line": s, "month": m, "cost_cents": c} for (p, s, m), c in rows.items()]


def import_costs(conn: sa.Connection, rows: list[dict[str, object]], *, source: str) -> int:
    known = set(conn.execute(sa.select(practices.c.slug)).scalars())
    unknown = sorted({str(r["practice"]) for r in rows} - known)
    if unknown:
        raise ValidationError(f"{source}: unknown practice(s) {', '.join(unknown)} (hub practice list)")
    t = report_costs
    for r in rows:
        conn.execute(sa.delete(t).where(t.c.practice == r["practice"], t.c.service_line == r["service_line"],
                                        t.c.month == r["month"]))
    if rows:
        conn.execute(sa.insert(t), rows)
    rollups.refresh(conn, {(str(r["practice"]), str(r["month"])) for r in rows})
    return len(rows)
