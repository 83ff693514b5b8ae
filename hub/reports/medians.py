"""Exact medians from the day histograms, in SQL (SQLite and PostgreSQL alike).

For each group the histogram's running count finds the middle value(s): with ``tot``
observations, the lower middle is the first value whose running count reaches half
(``2 * cum >= tot``) and the upper middle the first that passes it (``2 * cum > tot``).
The median is their mean. ``report_medians`` keeps the medians of the slicings the
dashboard asks for most (by site and month, with or without service line) so those
reports read one row per figure.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

import sqlalchemy as sa

from hub.reports.batching import insert_rows, round_trip
from hub.reports.tables import SITE_WEEK_GRAIN, WEEKLY_THIRD_AVAILABLE, report_medians

MONTHLY_THIRD_AVAILABLE = "third_available_days"

# report_medians grain → the dimensions it is sliced by (besides month)
# (the MSO-wide ones are computed when asked: keeping them would re-read every practice on each batch)
SUMMARY_GRAINS = {"site": ("practice", "service_line"), "pm": ("practice",)}


def median_query(exprs: list[str], where: str, table: str = "report_hist") -> str:
    """SELECT k0.., metric, lower middle, upper middle FROM ``table`` (report_hist, or the fine grain's
    report_fine_hist) WHERE ``where``, grouped by ``exprs``."""
    keys = [f"k{i}" for i in range(len(exprs))]
    select = "".join(f"{e} AS {k}, " for e, k in zip(exprs, keys, strict=True))
    cols = "".join(k + ", " for k in keys)
    part = ", ".join([*keys, "metric"])
    return (f"WITH h AS (SELECT {select}metric, value, SUM(n) AS n FROM {table} WHERE {where} "
            f"GROUP BY {', '.join([*exprs, 'metric', 'value'])}), "
            f"c AS (SELECT {cols}metric, value, "
            f"SUM(n) OVER (PARTITION BY {part} ORDER BY value ROWS UNBOUNDED PRECEDING) AS cum, "
            f"SUM(n) OVER (PARTITION BY {part}) AS tot FROM h) "
            f"SELECT {cols}metric, MIN(CASE WHEN 2 * cum >= tot THEN value END) AS lower_middle, "
            f"MIN(CASE WHEN 2 * cum > tot THEN value END) AS upper_middle FROM c GROUP BY {part}")


def medians(conn: sa.Connection, exprs: list[str], where: str, params: dict[str, Any], table: str = "report_hist"
            ) -> dict[tuple[Any, ...], dict[str, float]]:
    out: dict[tuple[Any, ...], dict[str, float]] = defaultdict(dict)
    n = len(exprs)
    stmt = sa.text(median_query(exprs, where, table))
    for name in ("months", "weeks"):
        if name in params and f":{name}" in where:
            stmt = stmt.bindparams(sa.bindparam(name, expanding=True))
    for row in conn.execute(stmt, params):
        out[tuple(row[:n])][row[n]] = round((int(row[n + 1]) + int(row[n + 2])) / 2, 2)
    return out


def weeks_of(months: list[str]) -> list[str]:
    """The Mondays of the ISO weeks that overlap these months (a week across two months is in both)."""
    out: set[str] = set()
    for month in months:
        first = dt.date.fromisoformat(f"{month}-01")
        day = first - dt.timedelta(days=first.weekday())
        while day.strftime("%Y-%m") <= month:
            out.add(day.isoformat())
            day += dt.timedelta(days=7)
    return sorted(out)


def _summaries_query() -> str:
    """The medians of every kept slicing, by month and by week, in one statement (one round trip a refresh):
    each row names its grain and period kind, its keys padded to the widest slicing's. Of one
    practice (``:p``): its primary key leads with the grain and the practice, so the index is read by practice
    however stale the planner's statistics (with several practices at once, after a backfill into empty rollups,
    it read every practice's rows); a range of periods bounds the scan."""
    by_month = (f"grain = 'site' AND practice = :p AND month >= :month_lo AND month <= :month_hi AND "
                f"month IN :months AND metric <> '{WEEKLY_THIRD_AVAILABLE}'")
    by_week = (f"grain = '{SITE_WEEK_GRAIN}' AND practice = :p AND week >= :week_lo AND week <= :week_hi "
               f"AND week IN :weeks AND metric <> '{MONTHLY_THIRD_AVAILABLE}'")
    widest = max(len(dims) for dims in SUMMARY_GRAINS.values()) + 1
    parts = []
    for grain, dims in SUMMARY_GRAINS.items():
        for period, where in (("month", by_month), ("week", by_week)):
            keys = [f"q.k{i}" if i <= len(dims) else "''" for i in range(widest)]
            parts.append(f"SELECT '{grain}' AS g, '{period}' AS period, {', '.join(keys)}, q.metric, "
                         f"q.lower_middle, q.upper_middle FROM ({median_query([*dims, period], where)}) q")
    return " UNION ALL ".join(parts)


def refresh_summaries(conn: sa.Connection, cells: set[tuple[str, str]]) -> None:
    """Recompute the kept medians touched by a change to these (practice, month) cells: those of the months,
    and those of the weeks that overlap them (read from every month cell the week spans)."""
    t = report_medians
    by_practice: dict[str, list[str]] = defaultdict(list)
    for practice, month in cells:
        by_practice[practice].append(month)
    grains = t.c.grain.in_(tuple(SUMMARY_GRAINS))
    with round_trip(conn):
        for practice, months in sorted(by_practice.items()):  # by practice: SQLite scans for (a, b) IN (pairs)
            conn.execute(sa.delete(t).where(grains, t.c.practice == practice, t.c.month.in_(months)))
            conn.execute(sa.delete(t).where(grains, t.c.practice == practice, t.c.month == "",
                                            t.c.week.in_(weeks_of(months))))
    stmt = sa.text(_summaries_query()).bindparams(sa.bindparam("months", expanding=True),
                                                  sa.bindparam("weeks", expanding=True))
    found: list[Any] = []
    for practice, months in sorted(by_practice.items()):
        its_weeks = weeks_of(months)
        found.extend(conn.execute(stmt, {"p": practice, "months": months, "month_lo": min(months),
                                         "month_hi": max(months), "weeks": its_weeks, "week_lo": its_weeks[0],
                                         "week_hi": its_weeks[-1]}))
    rows = []
    for grain, period, *rest in found:
        dims = SUMMARY_GRAINS[grain]
        named = dict(zip([*dims, period], rest, strict=False))
        metric, lower, upper = rest[-3:]
        rows.append({"grain": grain, "practice": named.get("practice", "*"),
                     "service_line": named.get("service_line", "*"), "month": named.get("month", ""),
                     "week": named.get("week", ""), "metric": _as_reported(metric),
                     "median": round((int(lower) + int(upper)) / 2, 2)})
    insert_rows(conn, t, rows)


def _as_reported(metric: str) -> str:
    """A week's third next available is the catalog's third_available_days of that week."""
    return MONTHLY_THIRD_AVAILABLE if metric == WEEKLY_THIRD_AVAILABLE else metric
