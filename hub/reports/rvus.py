"""Work RVUs: the RVU table the MSO imports (``hub rvu import``), for provider productivity.

The file is a CSV with a header row naming (any order, case and spacing ignored):

- ``code`` (or ``hcpcs``): the CPT/HCPCS procedure code, five letters or digits;
- ``modifier`` (or ``mod``): a two-character modifier, empty for the code's base row;
- ``work_rvu`` (or ``work rvu``, ``work_rvus``): the work RVU, a decimal of at most three places;
- ``year`` (or ``effective_year``): the year the schedule is in effect, unless ``--year`` gives it
  for every row of a file without the column.

The whole file is checked before anything is stored; the first bad line is named (file and line) and
nothing is imported. A file gives complete schedules: each effective year it holds replaces that year's
rows altogether (a code dropped from the year's file is gone from the year), and the other years stay.

How a charge line is priced (``rollups.Sql.rvu_joins`` and ``work_rvu_milli``, summed into the rollups
like any measure): the schedule of the latest imported year on or before the line's service year (a 2027
line uses the 2026 schedule until 2027 is imported; a line older than every schedule is unpriced), in it
the row of the line's code with the first of its modifiers (up to four) that has a row (26, TC, ...), or
else the code's base row, times the line's units (1 when it sends none). A line no row
prices counts 0 work RVUs and is "unpriced": ``unpriced`` lists those lines by practice, year and code
(no patient data), and a site none of whose lines is priced has no work RVU figure at all (``coverage``).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from hub.errors import ValidationError
from hub.reports import rollups
from hub.reports.tables import report_rvus
from hub.store.engine import writer

COLUMNS = {
    "code": ("code", "hcpcs"),
    "modifier": ("modifier", "mod"),
    "work_rvu": ("work_rvu", "work_rvus", "work rvu", "work rvus"),
    "year": ("year", "effective_year", "effective year"),
}
_CODE = re.compile(r"^[A-Z0-9]{5}$")
_MODIFIER = re.compile(r"^[A-Z0-9]{2}$")
YEARS = (1992, 2100)  # the RBRVS schedule began in 1992
MAX_RVU = Decimal("1000")
SOURCE_LIMIT = 255


@dataclass(frozen=True)
class RvuRow:
    year: int
    code: str
    modifier: str  # '' for the code's base row
    work_milli: int  # the work RVU in thousandths


def _header(names: Sequence[str] | None) -> dict[str, str]:
    """Our column → the file's column, by the names ``COLUMNS`` accepts."""
    found: dict[str, str] = {}
    for name in names or []:
        key = " ".join(name.replace("_", " ").split()).lower()
        for ours, accepted in COLUMNS.items():
            if key in {a.replace("_", " ") for a in accepted} and ours not in found:
                found[ours] = name
    return found


def parse_rvus(text: str, *, source: str, year: int | None = None) -> list[RvuRow]:
    """The rows of an RVU file, all checked; ``ValidationError`` naming the file and line of the first bad one."""
    if year is not None and not YEARS[0] <= year <= YEARS[1]:
        raise ValidationError(f"{source}: --year must be between {YEARS[0]} and {YEARS[1]}, not {year}")
    reader = csv.DictReader(io.StringIO(text))
    columns = _header(reader.fieldnames)
    needed = ["code", "modifier", "work_rvu"] + ([] if year is not None else ["year"])
    missing = [c for c in needed if c not in columns]
    if missing:
        raise ValidationError(f"{source}: line 1: the header lacks {', '.join(missing)} (needs code, modifier, "
                              f"work_rvu and year, or --year; found {', '.join(reader.fieldnames or []) or 'nothing'})")
    if year is not None and "year" in columns:
        raise ValidationError(f"{source}: the file has a year column and --year was given: use one")
    rows: list[RvuRow] = []
    seen: dict[tuple[int, str, str], int] = {}
    errors: list[str] = []
    for line, raw in enumerate(reader, start=2):
        if not any((v or "").strip() for v in raw.values() if isinstance(v, str)):
            continue  # a blank line
        try:
            row = _row(raw, columns, year)
        except ValueError as exc:
            errors.append(f"line {line}: {exc}")
            continue
        key = (row.year, row.code, row.modifier)
        if key in seen:
            errors.append(f"line {line}: code {row.code}{' modifier ' + row.modifier if row.modifier else ''} "
                          f"of {row.year} is given again (first on line {seen[key]})")
            continue
        seen[key] = line
        rows.append(row)
    if errors:
        more = f" (and {len(errors) - 1} more bad line(s))" if len(errors) > 1 else ""
        raise ValidationError(f"{source}: {errors[0]}{more}; nothing was imported")
    if not rows:
        raise ValidationError(f"{source}: no RVU rows below the header; nothing was imported")
    return rows


def _row(raw: dict[str, Any], columns: dict[str, str], year: int | None) -> RvuRow:
    def cell(name: str) -> str:
        value = raw.get(columns[name])
        return value.strip() if isinstance(value, str) else ""

    code = cell("code").upper()
    if not _CODE.match(code):
        raise ValueError(f"code must be a CPT/HCPCS code of five letters or digits, not {code[:20]!r}")
    modifier = cell("modifier").upper()
    if modifier and not _MODIFIER.match(modifier):
        raise ValueError(f"modifier must be two letters or digits, or empty, not {modifier[:20]!r}")
    text = cell("work_rvu")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"work RVU is not a number: {text[:20]!r}") from None
    if not value.is_finite() or value < 0 or value >= MAX_RVU:
        raise ValueError(f"work RVU must be from 0 to under {MAX_RVU}, not {text[:20]!r}")
    milli = value * 1000
    if milli != milli.to_integral_value():
        raise ValueError(f"work RVU has more than three decimal places: {text[:20]!r}")
    if year is None:
        text = cell("year")
        if not re.fullmatch(r"\d{4}", text) or not YEARS[0] <= int(text) <= YEARS[1]:
            raise ValueError(f"year must be a year from {YEARS[0]} to {YEARS[1]}, not {text[:20]!r}")
        year = int(text)
    return RvuRow(year, code, modifier, int(milli))


@dataclass(frozen=True)
class Imported:
    rows: int
    years: list[int]
    replaced: int  # rows of those years stored before, now replaced
    cells: int  # (practice, month) cells marked for recomputing


def import_rvus(conn: sa.Connection, rows: list[RvuRow], *, source: str) -> Imported:
    """Store the rows in one transaction (the caller's): each year they hold replaces that year's rows. The
    months whose charges the change can price differently are marked dirty for the next refresh."""
    t = report_rvus
    years = sorted({r.year for r in rows})
    replaced = conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.year.in_(years))).scalar_one()
    conn.execute(sa.delete(t).where(t.c.year.in_(years)))
    label = source[-SOURCE_LIMIT:]
    conn.execute(sa.insert(t), [{"year": r.year, "code": r.code, "modifier": r.modifier, "work_milli": r.work_milli,
                                 "source": label} for r in rows])
    cells = _cells_from(conn, years[0])
    rollups.mark_dirty(conn, cells)
    return Imported(len(rows), years, int(replaced), len(cells))


def import_file(engine: sa.Engine, path: Path, *, year: int | None = None) -> Imported:
    """``hub rvu import``: parse the file whole, then store it in one transaction."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:  # CMS's files are Windows-1252; codes, modifiers and RVUs are ASCII either way
        text = data.decode("cp1252", errors="replace")
    rows = parse_rvus(text, source=str(path), year=year)
    with writer(engine).begin() as conn:
        return import_rvus(conn, rows, source=str(path))


def _cells_from(conn: sa.Connection, year: int) -> set[rollups.Cell]:
    """The cells of charges served in ``year`` or later: a schedule prices its year and the years after it
    up to the next schedule, and a line older than every schedule stays unpriced."""
    sql = rollups.Sql(conn.dialect.name)
    found = conn.execute(sa.text(f"SELECT DISTINCT practice, {sql.month('service_date')} FROM charges WHERE "
                                 f"service_date >= {sql.date_param('since')}"), {"since": f"{year}-01-01"})
    return {(p, m) for p, m in found if m}


def schedules(conn: sa.Connection) -> list[dict[str, Any]]:
    """The imported years: rows, base rows, modifier rows, and the file(s) they came from."""
    t = report_rvus
    q = (sa.select(t.c.year, sa.func.count(), sa.func.sum(sa.case((t.c.modifier == "", 1), else_=0)),
                   sa.func.min(t.c.source), sa.func.max(t.c.source)).group_by(t.c.year).order_by(t.c.year))
    return [{"year": int(y), "rows": int(n), "base_rows": int(base or 0), "modifier_rows": int(n) - int(base or 0),
             "source": lo if lo == hi else f"{lo} (and others)"} for y, n, base, lo, hi in conn.execute(q)]


def unpriced(conn: sa.Connection, *, date_from: str | None = None, date_to: str | None = None,
             practice: str | None = None) -> list[dict[str, Any]]:
    """Charge lines no RVU row prices, counted by practice, service year and procedure code (no patient data):
    what to add to the RVU table, or codes that carry no work (supplies, drugs)."""
    sql = rollups.Sql(conn.dialect.name)
    price = sql.work_rvu_milli("c")
    where = [f"{price} IS NULL"]
    params: dict[str, Any] = {}
    for name, op, value in (("lo", ">=", date_from), ("hi", "<=", date_to)):
        if value:
            where.append(f"c.service_date {op} {sql.date_param(name)}")
            params[name] = value
    if practice:
        where.append("c.practice = :practice")
        params["practice"] = practice
    year = "substr(CAST(c.service_date AS VARCHAR), 1, 4)" if sql.pg else "substr(c.service_date, 1, 4)"
    query = (f"SELECT c.practice, {year} AS year, COALESCE(c.procedure_code, '') AS code, COUNT(*) AS lines, "
             f"SUM(COALESCE(c.units, 1)) AS units FROM charges c{sql.rvu_joins('c')} WHERE {' AND '.join(where)} "
             f"GROUP BY c.practice, {year}, COALESCE(c.procedure_code, '') ORDER BY 1, 2, 3")
    return [{"practice": p, "year": int(y), "code": code or None, "lines": int(lines), "units": int(units or 0)}
            for p, y, code, lines, units in conn.execute(sa.text(query), params)]
