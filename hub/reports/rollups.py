"""Keeping the report rollups up to date, inside each ingest batch's transaction.

Around each canonical upsert the store hooks (implemented by ``hub.reports.upkeep``; the
pipeline itself knows nothing of reports) note the (practice, month) cells the batch's
records sat in before the write and sit in after it (a rescheduled appointment leaves one
month for another; a remittance belongs to its charge's service month) and mark them dirty;
``tracking(conn, items)`` does the same around a write of one's own (a bulk load, a test).
``refresh`` recomputes exactly the marked cells from the base tables. Recomputing whole
cells, rather than adding deltas, keeps status changes, reprocessed messages and late
corrections exactly right; the per-patient figures (new patients, consult conversion,
retention) are handled by ``hub.reports.visits``.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from hub.model.kinds import FINANCIAL_CLASS
from hub.reports import visits as visit_rollup
from hub.reports.medians import refresh_summaries
from hub.reports.tables import (
    DIMS,
    MEASURES,
    SITE_WEEK_GRAIN,
    WEEKLY_THIRD_AVAILABLE,
    report_cells,
    report_credits,
    report_dirty,
    report_hist,
)
from hub.store.engine import fetch_by_keys, writer

Cell = tuple[str, str]
SCHEDULED = ("booked", "arrived", "checked-in", "fulfilled", "noshow", "cancelled")
OCCUPYING = ("booked", "arrived", "checked-in", "fulfilled", "noshow")
AVAILABLE_SLOTS = ("free", "busy")
THIRD_AVAILABLE_HORIZON = 90
_LOOKAHEAD_MONTHS = 3  # a slot counts towards "third next available" of the months up to 90 days before it


def _q(values: Sequence[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class Sql:
    """The few expressions that differ between SQLite and PostgreSQL."""

    def __init__(self, dialect: str) -> None:
        self.pg = dialect == "postgresql"

    def days(self, later: str, earlier: str) -> str:
        """Whole days between two ISO dates (text, or date columns)."""
        if self.pg:
            return f"(CAST(substr(CAST({later} AS VARCHAR), 1, 10) AS DATE) - " \
                   f"CAST(substr(CAST({earlier} AS VARCHAR), 1, 10) AS DATE))"
        return f"CAST(julianday(substr({later}, 1, 10)) - julianday(substr({earlier}, 1, 10)) AS INTEGER)"

    def within_hours(self, later: str, earlier: str, hours: int) -> str:
        if self.pg:
            return f"(CAST({later} AS TIMESTAMPTZ) - CAST({earlier} AS TIMESTAMPTZ)) < INTERVAL '{hours} hours'"
        return f"(julianday({later}) - julianday({earlier})) * 24 < {hours}"

    def month(self, column: str) -> str:
        return f"substr(CAST({column} AS VARCHAR), 1, 7)" if self.pg else f"substr({column}, 1, 7)"

    def week(self, column: str) -> str:
        """The Monday (ISO week start) of the date in ``column``, as ``YYYY-MM-DD``."""
        if self.pg:
            return (f"to_char(date_trunc('week', CAST(substr(CAST({column} AS VARCHAR), 1, 10) AS DATE)), "
                    f"'YYYY-MM-DD')")
        return f"date(substr({column}, 1, 10), '-6 days', 'weekday 1')"

    def date_param(self, name: str) -> str:
        return f"CAST(:{name} AS DATE)" if self.pg else f":{name}"

    def contractual_cents(self, column: str) -> str:
        """Integer cents of the CARC group CO amounts in a remittance's ``adjustments`` JSON.

        Validation stores those amounts as whole-cent decimal strings; each is still turned into
        cents exactly, half-up (a half cent away from zero), so both stores give the same integer
        even for an amount stored before that rule: PostgreSQL by NUMERIC, whose ROUND is half away
        from zero; SQLite, which has no decimal type (a REAL makes 0.285 * 100 = 28.4999...), by
        reading the digits of the text."""
        if self.pg:
            return (f"(SELECT COALESCE(SUM(CAST(ROUND(CAST(j->>'amount' AS NUMERIC) * 100) AS BIGINT)), 0) FROM "
                    f"json_array_elements(CASE WHEN json_typeof({column}) = 'array' THEN {column} "
                    f"ELSE '[]'::json END) j WHERE j->>'group' = 'CO')")
        # a = the amount's text; s its sign, u its digits, d where its point is (or would be)
        fraction = "substr(u, d + 1) || '000'"
        cents = (f"s * (CAST(substr(u, 1, d - 1) AS INTEGER) * 100 + CAST(substr({fraction}, 1, 2) AS INTEGER) "
                 f"+ (substr({fraction}, 3, 1) >= '5'))")
        return (f"(SELECT COALESCE(SUM({cents}), 0) FROM (SELECT CASE WHEN a LIKE '-%' THEN -1 ELSE 1 END AS s, "
                f"ltrim(a, '-+') AS u, instr(ltrim(a, '-+') || '.', '.') AS d FROM (SELECT "
                f"trim(CAST(json_extract(j.value, '$.amount') AS TEXT)) AS a "
                f"FROM json_each(CASE WHEN json_type({column}) = 'array' THEN {column} ELSE '[]' END) j "
                f"WHERE json_extract(j.value, '$.group') = 'CO' AND json_extract(j.value, '$.amount') IS NOT NULL)))")


# ------------------------------------------------------------------ which cells a batch touches
def _month_shift(month: str, delta: int) -> str:
    i = int(month[:4]) * 12 + int(month[5:7]) - 1 + delta
    return f"{i // 12:04d}-{i % 12 + 1:02d}"


_OWN_MONTH = {"appointment": "start", "encounter": "start", "charge": "service_date", "slot": "start",
              "referral": "received_on"}


# kinds whose figures sit in another row's month: (that kind, the field naming it)
_PARENT = {"appointment": ("referral", "referral_source_id"), "remittance": ("charge", "charge_source_id")}


def _month_cells(practice: str, kind: str, month: str) -> set[Cell]:
    cells = {(practice, month)}
    if kind == "slot":
        cells.update((practice, _month_shift(month, -k)) for k in range(1, _LOOKAHEAD_MONTHS + 1))
    return cells


@functools.cache
def _lookups(dialect: str) -> dict[str, str]:
    """The look-ups by source id (``IN :keys``), made once per dialect: a batch runs a few of them."""
    sql = Sql(dialect)
    return {
        # an appointment's own month, and its referral's: a linked appointment moves the funnel figures
        "appointment": f"SELECT {sql.month('a.start')}, {sql.month('f.received_on')} FROM appointments a "
                       f"LEFT JOIN referrals f ON f.practice = a.practice AND f.source_id = a.referral_source_id "
                       f"WHERE a.practice = :p AND a.source_id IN :keys",
        "encounter": f"SELECT {sql.month('start')} FROM encounters WHERE practice = :p AND source_id IN :keys",
        "charge": f"SELECT {sql.month('service_date')} FROM charges WHERE practice = :p AND source_id IN :keys",
        "slot": f"SELECT {sql.month('start')} FROM slots WHERE practice = :p AND source_id IN :keys",
        "referral": f"SELECT {sql.month('received_on')} FROM referrals WHERE practice = :p AND source_id IN :keys",
        "remittance": f"SELECT {sql.month('c.service_date')} FROM remittances r JOIN charges c ON c.practice = "
                      f"r.practice AND c.source_id = r.charge_source_id WHERE r.practice = :p AND r.source_id IN :keys",
        # a patient's visits: its enterprise link decides whether they count as new (hub.reports.visits)
        "patient": f"SELECT {sql.month('start')} FROM appointments WHERE practice = :p AND patient_source_id IN "
                   f":keys UNION SELECT {sql.month('start')} FROM encounters WHERE practice = :p AND "
                   f"patient_source_id IN :keys",
    }


def _query_cells(conn: sa.Connection, wanted: dict[tuple[str, str], set[str]]) -> set[Cell]:
    """Run the lookup named by each (lookup, practice) for its source ids; the months found, as cells."""
    statements = _lookups(conn.dialect.name)
    cells: set[Cell] = set()
    for (name, practice), ids in wanted.items():
        months: set[str] = set()
        for row in fetch_by_keys(conn, statements[name], ids, p=practice):
            months.update(row)
        for month in months:
            if month:
                cells |= _month_cells(practice, name, month)
    return cells


def cells_of(conn: sa.Connection, items: Sequence[tuple[dict[str, Any], Any]]) -> set[Cell]:
    """The (practice, month) cells the stored rows of these records belong to, as the store holds them now."""
    wanted: dict[tuple[str, str], set[str]] = defaultdict(set)
    for record, _ in items:
        kind, practice = record["kind"], record["practice"]
        if kind == "patient_merge":
            wanted[("patient", practice)].update((record["prior_source_id"], record["surviving_source_id"]))
        elif kind in _OWN_MONTH or kind in ("remittance", "patient"):
            wanted[(kind, practice)].add(record["source_id"])
    return _query_cells(conn, wanted)


def cells_written(conn: sa.Connection, items: Sequence[tuple[dict[str, Any], Any]]) -> set[Cell]:
    """The cells these records sit in once written, given the cells they sat in before.

    A record's own date names its month without a query: a NULL date keeps the stored
    one, and a record the store refused as older changes nothing, and both of those are
    among the cells before. What hangs on another row is read from that row by its id (a
    remittance's charge, an appointment's referral), unless that row is in the batch and so
    marked already. A patient or a merge moves no visit between months: its cells before
    are its cells after."""
    in_batch = {(record["kind"], record["practice"], record.get("source_id")) for record, _ in items}
    cells: set[Cell] = set()
    wanted: dict[tuple[str, str], set[str]] = defaultdict(set)
    for record, _ in items:
        kind, practice = record["kind"], record["practice"]
        column = _OWN_MONTH.get(kind)
        if column is not None and (value := record.get(column)):
            cells |= _month_cells(practice, kind, str(value)[:7])
        parent = _PARENT.get(kind)
        if parent is not None and (parent_id := record.get(parent[1])) and \
                (parent[0], practice, parent_id) not in in_batch:
            wanted[(parent[0], practice)].add(parent_id)
    return cells | _query_cells(conn, wanted)


@contextmanager
def tracking(conn: sa.Connection, items: Sequence[tuple[dict[str, Any], Any]]) -> Iterator[None]:
    """Mark dirty every cell the enclosed write moves records out of or into.

    Marking is cheap and happens in the batch's own transaction, so no change can be missed;
    recomputing the cells (``refresh_dirty``) waits for the next report or ``hub report
    refresh``. Recomputing inside every batch cost ingest three to six times its own time,
    and a backfill touches the same months over and over: deferred, each cell is
    recomputed once however many batches touched it."""
    before = cells_of(conn, items)
    yield
    mark_dirty(conn, before | cells_written(conn, items))


def mark_dirty(conn: sa.Connection, cells: set[Cell]) -> None:
    if not cells:
        return
    placeholder = "?" if conn.dialect.name == "sqlite" else "%s"
    conn.exec_driver_sql(f"INSERT INTO {report_dirty.name} (practice, month) VALUES ({placeholder}, {placeholder}) "
                         "ON CONFLICT DO NOTHING", sorted(cells))


def refresh_dirty(engine: sa.Engine) -> int:
    """Recompute every dirty cell, in one transaction; returns how many there were.

    The cells are claimed by deleting their marks first: an ingest that lands meanwhile
    marks its cells again (on PostgreSQL it waits for this transaction on a mark being
    deleted), so its change is recomputed by the next refresh instead of being lost. One
    refresh runs at a time: two at once would both rewrite a cell."""
    with writer(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(7305532)"))
        claimed = conn.execute(sa.delete(report_dirty).returning(report_dirty.c.practice, report_dirty.c.month))
        cells = {(p, m) for p, m in claimed}
        if cells:
            refresh(conn, cells)
    return len(cells)


# ------------------------------------------------------------------ recomputing cells
def refresh(conn: sa.Connection, cells: set[Cell]) -> None:
    """Recompute the rollups of these (practice, month) cells from the base tables."""
    if not cells:
        return
    by_practice = _months_by_practice(cells)
    changed: set[Cell] = set()
    for practice, months in by_practice.items():
        # a practice at a time: the visit history held in memory stays one practice's patients
        changed |= visit_rollup.rebuild(conn, {(practice, month) for month in months})
    by_practice = _months_by_practice(set(cells) | changed)
    sql = Sql(conn.dialect.name)
    for practice, months in by_practice.items():
        _refresh_practice(conn, sql, practice, sorted(months))


def _months_by_practice(cells: set[Cell]) -> dict[str, list[str]]:
    by_practice: dict[str, list[str]] = defaultdict(list)
    for practice, month in cells:
        by_practice[practice].append(month)
    return by_practice


def _params(practice: str, months: list[str]) -> dict[str, Any]:
    lo, hi = months[0], _month_shift(months[-1], 1)
    return {"p": practice, "months": months, "lo": lo, "hi": hi, "dlo": f"{lo}-01", "dhi": f"{hi}-01"}


def _text(sql: str) -> sa.TextClause:
    return sa.text(sql).bindparams(sa.bindparam("months", expanding=True))


def _select(dims: dict[str, str], month: str, week: str, measures: dict[str, str], source: str) -> str:
    dim_sql = ", ".join(f"{expr} AS {name}" for name, expr in dims.items())
    meas = ", ".join(f"{measures.get(m, '0')} AS {m}" for m in MEASURES)
    groups = ", ".join(_grouping([*dims.values(), month, week]))
    return f"SELECT {dim_sql}, {month} AS month, {week} AS week, {meas} FROM {source} GROUP BY {groups}"


def _grouping(exprs: list[str]) -> list[str]:
    return [e for e in exprs if not e.startswith("'")]  # PostgreSQL refuses constants in GROUP BY


def _dims(alias: str, *, location: bool = True, provider: bool = True, fc: bool = False) -> dict[str, str]:
    return {
        "practice": f"{alias}.practice",
        "location": f"COALESCE({alias}.location_source_id, '')" if location else "''",
        "provider": f"COALESCE({alias}.provider_source_id, '')" if provider else "''",
        "service_line": f"COALESCE({alias}.service_line, '')",
        "financial_class": f"COALESCE({alias}.financial_class, '')" if fc else "''",
    }


def _cell_sources(sql: Sql) -> list[str]:
    in_range = ("{a}.practice = :p AND {a}.{col} >= {lo} AND {a}.{col} < {hi} AND {month} IN :months")

    def where(a: str, col: str, dated: bool = False) -> str:
        lo, hi = (sql.date_param("dlo"), sql.date_param("dhi")) if dated else (":lo", ":hi")
        return in_range.format(a=a, col=col, lo=lo, hi=hi, month=sql.month(f"{a}.{col}"))

    visits = _select({"practice": "v.practice", "location": "v.location", "provider": "v.provider",
                      "service_line": "v.service_line", "financial_class": "''"}, "v.month", sql.week("v.visit_date"), {
        "visits": "COUNT(*)",
        "new_visits": "SUM(CASE WHEN v.is_new THEN 1 ELSE 0 END)",
        "consults_cosmetic": "SUM(CASE WHEN v.service_line = 'cosmetic_aesthetics' AND v.visit_category = 'consult' "
                             "THEN 1 ELSE 0 END)",
        "consults_cosmetic_converted": "SUM(CASE WHEN v.service_line = 'cosmetic_aesthetics' "
                                       "AND v.visit_category = 'consult' AND v.converted THEN 1 ELSE 0 END)",
    }, "report_visits v WHERE v.practice = :p AND v.month IN :months")
    appts = _select(_dims("a"), sql.month("a.start"), sql.week("a.start"), {
        "appts_scheduled": f"SUM(CASE WHEN a.status IN ({_q(SCHEDULED)}) THEN 1 ELSE 0 END)",
        "appts_noshow": "SUM(CASE WHEN a.status = 'noshow' THEN 1 ELSE 0 END)",
        "appts_cancelled": "SUM(CASE WHEN a.status = 'cancelled' THEN 1 ELSE 0 END)",
        "appts_late_cancelled": "SUM(CASE WHEN a.status = 'cancelled' AND a.cancelled_at IS NOT NULL AND "
                                f"{sql.within_hours('a.start', 'a.cancelled_at', 24)} THEN 1 ELSE 0 END)",
        # booked minutes count only where capacity is published (a site with slots): a site without
        # slots has no utilization, and must not inflate the MSO total's numerator either
        "booked_minutes": f"SUM(CASE WHEN a.status IN ({_q(OCCUPYING)}) AND EXISTS (SELECT 1 FROM slots s2 "
                          "WHERE s2.practice = a.practice) THEN COALESCE(a.duration_min, 0) ELSE 0 END)",
    }, f"appointments a WHERE {where('a', 'start')}")
    slots = _select(_dims("s"), sql.month("s.start"), sql.week("s.start"), {
        "available_minutes": "SUM(COALESCE(s.duration_min, 0))",
    }, f"slots s WHERE {where('s', 'start')} AND s.status IN ({_q(AVAILABLE_SLOTS)})")
    mix = {f"charges_{fc}_cents": f"SUM(CASE WHEN c.financial_class = '{fc}' THEN c.amount ELSE 0 END)"
           for fc in FINANCIAL_CLASS}
    mix["charges_unknown_cents"] = (f"SUM(CASE WHEN c.financial_class IS NULL OR c.financial_class NOT IN "
                                    f"({_q(FINANCIAL_CLASS)}) THEN c.amount ELSE 0 END)")
    charges = _select(_dims("c", fc=True), sql.month("c.service_date"), sql.week("c.service_date"), {
        "charge_lines": "COUNT(*)",
        "charges_cents": "SUM(COALESCE(c.amount, 0))",
        "charges_posted": "SUM(CASE WHEN c.posted_on IS NOT NULL THEN 1 ELSE 0 END)",
        "charge_lag_days": f"SUM(CASE WHEN c.posted_on IS NOT NULL THEN {sql.days('c.posted_on', 'c.service_date')} "
                           "ELSE 0 END)",
        **mix,
    }, f"charges c WHERE {where('c', 'service_date', dated=True)}")
    remits = _select(_dims("c", fc=True), sql.month("c.service_date"), sql.week("c.service_date"), {
        "payments_cents": "SUM(COALESCE(r.paid_amount, 0))",
        "adjustments_cents": "SUM(COALESCE(r.adjustment_amount, 0))",
        "contractual_cents": f"SUM({sql.contractual_cents('r.adjustments')})",
        "remit_lines": "COUNT(*)",
        "denied_lines": "SUM(CASE WHEN r.denied THEN 1 ELSE 0 END)",
        "adjudicated_cents": "SUM(COALESCE(c.amount, 0))",
        "denied_cents": "SUM(CASE WHEN r.denied THEN COALESCE(c.amount, 0) ELSE 0 END)",
    }, "charges c JOIN remittances r ON r.practice = c.practice AND r.charge_source_id = c.source_id "
       f"WHERE {where('c', 'service_date', dated=True)}")
    referrals = _select(_dims("f", location=False, provider=False), sql.month("f.received_on"),
                        sql.week("f.received_on"), {
        "referrals_received": "COUNT(*)",
        "referrals_scheduled": "SUM(CASE WHEN f.first_scheduled IS NOT NULL THEN 1 ELSE 0 END)",
        "referrals_attended": "SUM(CASE WHEN f.first_attended IS NOT NULL THEN 1 ELSE 0 END)",
    }, f"({_referrals_sql(sql)}) f")
    costs = _select({"practice": "k.practice", "location": "''", "provider": "''",
                     "service_line": "k.service_line", "financial_class": "''"}, "k.month", "''", {
        "costs_cents": "SUM(k.cost_cents)", "cost_cells": "COUNT(*)",
    }, "report_costs k WHERE k.practice = :p AND k.month IN :months")
    return [visits, appts, slots, charges, remits, referrals, costs]


def _referrals_sql(sql: Sql) -> str:
    month = sql.month("f.received_on")
    first = ("(SELECT MIN(substr(a.start, 1, 10)) FROM appointments a WHERE a.practice = f.practice AND "
             "a.referral_source_id = f.source_id AND a.status IN ({}))")
    return (f"SELECT f.practice, f.service_line, f.received_on, {first.format(_q(SCHEDULED))} AS first_scheduled, "
            f"{first.format(_q(visit_rollup.COMPLETED))} AS first_attended FROM referrals f "
            f"WHERE f.practice = :p AND f.received_on >= {sql.date_param('dlo')} AND "
            f"f.received_on < {sql.date_param('dhi')} AND {month} IN :months")


def _hist_sources(sql: Sql) -> list[tuple[str, str]]:
    lead = sql.days("a.start", "a.booked_at")
    month, week = sql.month("a.start"), sql.week("a.start")
    appts = (f"SELECT {', '.join(f'{e} AS {n}' for n, e in _dims('a').items())}, {month} AS month, "
             f"{week} AS week, 'lead_days' AS metric, {lead} AS value, COUNT(*) AS n FROM appointments a "
             f"WHERE a.practice = :p AND a.start >= :lo AND a.start < :hi AND {month} IN :months "
             f"AND a.status IN ({_q(SCHEDULED)}) AND a.booked_at IS NOT NULL AND a.booked_at <= a.start "
             f"GROUP BY {', '.join(_grouping([*_dims('a').values(), month, week, lead]))}")
    out = [("lead_days", appts)]
    month, week = sql.month("f.received_on"), sql.week("f.received_on")
    for metric, column in (("referral_to_scheduled_days", "first_scheduled"),
                           ("referral_to_attended_days", "first_attended")):
        days = sql.days(f"f.{column}", "f.received_on")
        dims = _dims("f", location=False, provider=False)
        out.append((metric, f"SELECT {', '.join(f'{e} AS {n}' for n, e in dims.items())}, "
                            f"{month} AS month, {week} AS week, '{metric}' AS metric, {days} AS value, "
                            f"COUNT(*) AS n FROM ({_referrals_sql(sql)}) f WHERE f.{column} IS NOT NULL "
                            f"GROUP BY {', '.join(_grouping([*dims.values(), month, week, days]))}"))
    return out


def _credits_sql(sql: Sql) -> str:
    dims = _dims("c", fc=True)
    paid_on = "COALESCE(r.paid_on, c.service_date)"
    keys = [sql.month("c.service_date"), sql.week("c.service_date"), sql.month(paid_on), sql.week(paid_on)]
    return (f"INSERT INTO report_credits (grain, {', '.join(DIMS)}, month, week, paid_month, paid_week, "
            f"credits_cents) SELECT 'fine', {', '.join([*dims.values(), *keys])}, "
            f"SUM(COALESCE(r.paid_amount, 0) + COALESCE(r.adjustment_amount, 0)) FROM charges c JOIN remittances r "
            f"ON r.practice = c.practice AND r.charge_source_id = c.source_id WHERE c.practice = :p AND "
            f"c.service_date >= {sql.date_param('dlo')} AND c.service_date < {sql.date_param('dhi')} AND "
            f"{sql.month('c.service_date')} IN :months "
            f"GROUP BY {', '.join([*dims.values(), *keys])}")


def _refresh_practice(conn: sa.Connection, sql: Sql, practice: str, months: list[str]) -> None:
    params = _params(practice, months)
    for table in (report_cells, report_hist):
        conn.execute(sa.delete(table).where(table.c.practice == practice, table.c.month.in_(months)))
    conn.execute(sa.delete(report_credits).where(report_credits.c.practice == practice,
                                                 report_credits.c.month.in_(months)))
    cols = ", ".join([*DIMS, "month", "week", *MEASURES])
    sums = ", ".join(f"SUM({m})" for m in MEASURES)
    union = " UNION ALL ".join(_cell_sources(sql))
    conn.execute(_text(f"INSERT INTO report_cells (grain, {cols}) SELECT 'fine', {', '.join(DIMS)}, month, week, "
                       f"{sums} FROM ({union}) u GROUP BY {', '.join(DIMS)}, month, week"), params)
    hist_cols = f"{', '.join(DIMS)}, month, week, metric, value"
    for _, select in _hist_sources(sql):
        conn.execute(_text(f"INSERT INTO report_hist (grain, {hist_cols}, n) SELECT 'fine', {hist_cols}, n "
                           f"FROM ({select}) h"), params)
    _third_available(conn, sql, practice, months)
    conn.execute(_text(_credits_sql(sql)), params)
    # the coarse grains the common "by site" reports read: by month (week '', so a month report reads one
    # row per month, not one per week of it) and by week
    for grain, week, paid_week, where in (("site", "''", "''", ""), (SITE_WEEK_GRAIN, "week", "paid_week",
                                                                     " AND week <> ''")):
        by_week = "" if week == "''" else ", week"
        conn.execute(_text(f"INSERT INTO report_cells (grain, {cols}) SELECT '{grain}', practice, '*', '*', "
                           f"service_line, '*', month, {week}, {sums} FROM report_cells WHERE grain = 'fine' AND "
                           f"practice = :p AND month IN :months{where} "
                           f"GROUP BY practice, service_line, month{by_week}"), params)
        conn.execute(_text(f"INSERT INTO report_hist (grain, {hist_cols}, n) SELECT '{grain}', practice, '*', '*', "
                           f"service_line, '*', month, {week}, metric, value, SUM(n) FROM report_hist WHERE "
                           f"grain = 'fine' AND practice = :p AND month IN :months "
                           f"GROUP BY practice, service_line, month{by_week}, metric, value"), params)
        paid_by_week = "" if week == "''" else ", week, paid_week"
        conn.execute(_text("INSERT INTO report_credits (grain, practice, location, provider, service_line, "
                           f"financial_class, month, week, paid_month, paid_week, credits_cents) SELECT '{grain}', "
                           f"practice, '*', '*', service_line, '*', month, {week}, paid_month, {paid_week}, "
                           "SUM(credits_cents) FROM report_credits WHERE grain = 'fine' AND practice = :p AND "
                           f"month IN :months GROUP BY practice, service_line, month, paid_month{paid_by_week}"),
                     params)
    refresh_summaries(conn, practice, months)


def _anchors(month: str) -> Iterator[tuple[dt.date, str]]:
    """The days "third next available" is measured from in a month: its first day, and each Monday in it
    (a week's figure is its Monday's, kept apart as WEEKLY_THIRD_AVAILABLE)."""
    first = dt.date.fromisoformat(f"{month}-01")
    yield first, "third_available_days"
    day = first + dt.timedelta(days=-first.weekday() % 7)
    while day.strftime("%Y-%m") == month:
        yield day, WEEKLY_THIRD_AVAILABLE
        day += dt.timedelta(days=7)


def _third_available(conn: sa.Connection, sql: Sql, practice: str, months: list[str]) -> None:
    """Days from each month's first day (and each Monday) to the third free slot (per location, provider,
    service line)."""
    first = dt.date.fromisoformat(f"{months[0]}-01")
    until = dt.date.fromisoformat(f"{months[-1]}-01") + dt.timedelta(days=31 + THIRD_AVAILABLE_HORIZON)
    rows = conn.execute(sa.text(
        "SELECT COALESCE(location_source_id, ''), COALESCE(provider_source_id, ''), COALESCE(service_line, ''), "
        "substr(start, 1, 10) FROM slots WHERE practice = :p AND start >= :lo AND start < :hi AND status = 'free'"),
        {"p": practice, "lo": first.isoformat(), "hi": until.isoformat()})
    free: dict[tuple[str, str, str], list[dt.date]] = defaultdict(list)
    for loc, prov, line, day in rows:
        free[(loc, prov, line)].append(dt.date.fromisoformat(day))
    hist: Counter[tuple[str, str, str, str, str, str, int]] = Counter()
    for (loc, prov, line), days in free.items():
        days.sort()
        for month in months:
            for start, metric in _anchors(month):
                i = bisect.bisect_left(days, start)  # days[i + 2] is the third free day on or after start
                if i + 2 < len(days) and (days[i + 2] - start).days <= THIRD_AVAILABLE_HORIZON:
                    week = (start - dt.timedelta(days=start.weekday())).isoformat()
                    hist[(loc, prov, line, month, week, metric, (days[i + 2] - start).days)] += 1
    if hist:
        conn.execute(sa.insert(report_hist), [
            {"grain": "fine", "practice": practice, "location": loc, "provider": prov, "service_line": line,
             "financial_class": "", "month": month, "week": week, "metric": metric, "value": value, "n": n}
            for (loc, prov, line, month, week, metric, value), n in hist.items()])


def stored_cells(conn: sa.Connection, practice: str | None = None) -> set[Cell]:
    """Every cell the base tables hold records in (of one practice, or of all)."""
    sql = Sql(conn.dialect.name)
    where = "WHERE practice = :p" if practice else ""
    cells: set[Cell] = set()
    for query in (f"SELECT DISTINCT practice, {sql.month('start')} FROM appointments {where}",
                  f"SELECT DISTINCT practice, {sql.month('start')} FROM encounters {where}",
                  f"SELECT DISTINCT practice, {sql.month('service_date')} FROM charges {where}",
                  f"SELECT DISTINCT practice, {sql.month('received_on')} FROM referrals {where}",
                  f"SELECT DISTINCT practice, month FROM report_costs {where}"):
        cells.update((p, m) for p, m in conn.execute(sa.text(query), {"p": practice}) if m)
    for p, m in conn.execute(sa.text(f"SELECT DISTINCT practice, {sql.month('start')} FROM slots {where}"),
                             {"p": practice}):
        if m:
            cells.update((p, _month_shift(m, -k)) for k in range(_LOOKAHEAD_MONTHS + 1))
    return cells


def rebuild_all(conn: sa.Connection) -> int:
    """Recompute every cell from scratch (after a bulk load that bypassed the pipeline). Returns cells."""
    conn.execute(sa.delete(report_dirty))  # everything is recomputed below
    cells = stored_cells(conn)
    refresh(conn, cells)
    return len(cells)
