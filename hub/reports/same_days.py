"""The same days of the prior month: what the current, unfinished month is compared with, like for like.

On the 10th, December's figures cover December 1 to 10; they are compared with November 1 to 10, not
with the whole of November. The rollups keep whole months, so the refresh also keeps, for the current
day at the sites (``hub.reports.periods.today_at_sites``), both sides through the same day of the month
(``keep``): the prior month's figures through that day, and the current month's through today, which
leaves out the bookings already made for its later days (a whole month's scheduled appointments against
ten days' would make every scheduling ratio look better or worse than it is). They are rows of
``report_cells`` and ``report_hist`` of the grain ``samedays``, at the fine detail (any slicing reads
them), whose ``month`` tells the two sides apart and whose ``week`` column holds the last day they count
(``YYYY-MM-DD``), and per practice and side one row with the service line ``*`` and no figures, which says
that practice's figures are kept through that day. A report reads them like any rollup and recomputes
nothing; while the day's rows of either side are not written yet (the day has just changed, or a cell was
recomputed) it says so rather than compare with another span.

Days are the practice's local calendar days, as every report's are. A day the prior month does not
have (the 29th to the 31st against a shorter month) compares with the whole prior month. Today counts
on both sides, although it is not over yet in the current month.

A cell recomputed by the refresh (a late remittance in the prior month, any new record or booking in the
current one) loses its same-days rows with its other rows (the refresh deletes a practice-month's rows of
every grain), its practice's mark included, so the next ``keep`` (which runs after each refresh) writes
that side again from the current records: they never lag the whole month's, and until then the report
says they are not ready. Figures that are no sum of days are not compared: the A/R balance (kept at a
month's end), retention (counted over whole months) and costs (imported by whole month); third next
available is measured from the month's first day, the same for the month's first days as for the whole
month.

The rows' own ``values`` (and the drill-down, the week, quarter and year figures) stay the month's stored
records, bookings ahead included; each row's ``compare`` carries both sides, ``values`` (the month before)
and ``current`` (the month so far), and a tile's headline and change are ``current`` against ``values``.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa

from hub.model.tables import practices
from hub.reports.figures import Figures
from hub.reports.medians import medians
from hub.reports.periods import today_at_sites
from hub.reports.rollups import REFRESH_LOCK, Sql, _hist_sources, _third_available, measure_sources
from hub.reports.tables import DIMS, MEASURES, report_cells, report_hist
from hub.store.engine import writer

GRAIN = "samedays"
MARK = "*"  # the service line of a practice's row that says through which day its figures are kept
MONTHLY_THIRD_AVAILABLE = "third_available_days"

NOT_BY_DAY = {  # why a figure has no same-days counterpart (Figures methods that read it)
    "ar": "the A/R balance is kept at a month's end, not at a day within it",
    "retention": "retention is counted over whole months",
    "costs": "costs are imported by whole month",
}


def cutoff(today: dt.date) -> tuple[str, dt.date]:
    """The prior month, and the last day of it the current month to ``today`` is compared with."""
    last_of_prior = today.replace(day=1) - dt.timedelta(days=1)
    return last_of_prior.strftime("%Y-%m"), last_of_prior.replace(day=min(today.day, last_of_prior.day))


# ------------------------------------------------------------------ keeping the rows
def spans(today: dt.date) -> list[tuple[str, dt.date]]:
    """The two sides kept for ``today``: the prior month through its matching day, the current month through today."""
    return [cutoff(today), (today.strftime("%Y-%m"), today)]


def keep(engine: sa.Engine, today: dt.date | None = None) -> int:
    """Write, for every practice that lacks them, the prior month's figures through today's day of the month and
    the current month's through today, and drop those of any other day. Returns how many practices were computed
    (0 when all are current)."""
    with engine.connect() as conn:
        sides = spans(today or today_at_sites(conn))
        c = report_cells.c
        marked = {(p, m) for p, m in conn.execute(sa.select(c.practice, c.month).where(
            c.grain == GRAIN, c.service_line == MARK,
            sa.or_(*[sa.and_(c.month == m, c.week == t.isoformat()) for m, t in sides])))}
        stale = conn.execute(sa.select(c.month).where(c.grain == GRAIN, *_other_days(report_cells, sides))
                             .limit(1)).first()
        todo = [(p, [(m, t) for m, t in sides if (p, m) not in marked])
                for (p,) in conn.execute(sa.select(practices.c.slug).order_by(practices.c.slug))]
    if stale is not None:
        with writer(engine).begin() as conn:
            _lock(conn)
            for table in (report_cells, report_hist):
                conn.execute(sa.delete(table).where(table.c.grain == GRAIN, *_other_days(table, sides)))
    done = 0
    for practice, missing in todo:  # a transaction each, as the refresh does a cell: no lock held for long
        for month, through in missing:
            with writer(engine).begin() as conn:
                _lock(conn)
                _write(conn, practice, month, through)
        done += bool(missing)
    return done


def _other_days(table: sa.Table, sides: list[tuple[str, dt.date]]) -> list[Any]:
    """The rows of neither side (another day's): ``where`` clauses."""
    return [sa.not_(sa.and_(table.c.month == m, table.c.week == t.isoformat())) for m, t in sides]


def _lock(conn: sa.Connection) -> None:
    if conn.dialect.name == "postgresql":  # one writer of the rollups at a time (rollups.refresh_cell)
        conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({REFRESH_LOCK})"))


def _write(conn: sa.Connection, practice: str, month: str, through: dt.date) -> None:
    """The practice's figures of ``month`` from its first day to ``through``, as rows of the ``samedays`` grain."""
    sql = Sql(conn.dialect.name)
    end = (through + dt.timedelta(days=1)).isoformat()  # the first day not counted
    params = {"p": practice, "months": [month], "lo": month, "hi": end, "dlo": f"{month}-01", "dhi": end,
              "through": through.isoformat()}
    for table in (report_cells, report_hist):
        conn.execute(sa.delete(table).where(table.c.grain == GRAIN, table.c.practice == practice,
                                            table.c.month == month))
    sources = []
    for source in measure_sources(sql):
        if source.name == "costs":  # whole months only
            continue
        if source.name == "visits":  # the visit rows are selected by month: bound them by day as the others are
            source = replace(source, where=f"{source.where} AND v.visit_date < :hi")
        sources.append(source.select_sql())
    dims, sums = ", ".join(DIMS), ", ".join(f"SUM({m})" for m in MEASURES)
    conn.execute(_text(f"INSERT INTO report_cells (grain, {dims}, month, week, {', '.join(MEASURES)}) "
                       f"SELECT '{GRAIN}', {dims}, month, :through, {sums} FROM ({' UNION ALL '.join(sources)}) u "
                       f"GROUP BY {dims}, month"), params)
    for _, select in _hist_sources(sql):
        conn.execute(_text(f"INSERT INTO report_hist (grain, {dims}, month, week, metric, value, n) "
                           f"SELECT '{GRAIN}', {dims}, month, :through, metric, value, SUM(n) FROM ({select}) h "
                           f"GROUP BY {dims}, month, metric, value"), params)
    third = [{**row, "grain": GRAIN, "week": through.isoformat()} for row in _third_available(conn, practice, [month])
             if row["metric"] == MONTHLY_THIRD_AVAILABLE]  # from the month's first day: no day bound
    if third:
        conn.execute(sa.insert(report_hist), third)
    conn.execute(sa.insert(report_cells).values(grain=GRAIN, practice=practice, location=MARK, provider=MARK,
                                                service_line=MARK, financial_class=MARK, month=month,
                                                week=through.isoformat()))


def _text(statement: str) -> sa.TextClause:
    return sa.text(statement).bindparams(sa.bindparam("months", expanding=True))


# ------------------------------------------------------------------ reading them
@dataclass
class SameDays:
    """Both sides of the comparison, by the report's dimensions (read, never computed): the prior month's figures
    through ``through`` (``cells``) and the current month's through ``today`` (``current``)."""

    month: str  # the prior month
    through: dt.date
    today: dt.date
    ready: bool  # every practice's rows of both sides are written for this day
    dims: list[str]  # the store columns of ``cells``' keys
    cells: dict[tuple[str, ...], Counter[str]] = field(default_factory=dict)
    current: dict[tuple[str, ...], Counter[str]] = field(default_factory=dict)

    def describe(self, current: str) -> dict[str, Any]:
        """The comparison of the in-progress month ``current``, as ``Report.periods`` states it."""
        entry: dict[str, Any] = {
            "comparable": self.ready, "basis": "same_days", "against": self.month, "through_day": self.through.day,
            "first_day": f"{self.month}-01", "last_day": self.through.isoformat(),
            "whole_prior_month": self.through.day == calendar.monthrange(self.through.year, self.through.month)[1],
            "current_first_day": f"{current}-01", "current_last_day": self.today.isoformat()}
        if not self.ready:
            entry["reason"] = (f"the figures of {self.month}-01 to {self.through.isoformat()} and of {current}-01 to "
                               f"{self.today.isoformat()} are not computed yet (the refresh keeps them for the "
                               "current day)")
        return entry


def read(conn: sa.Connection, columns: list[str], today: dt.date) -> SameDays:
    """The kept same-days figures for ``today``, grouped by ``columns`` (store column names, the site first)."""
    sides = spans(today)
    (month, through), _ = sides
    c = report_cells.c
    every = {p for (p,) in conn.execute(sa.select(practices.c.slug))}
    ready = True
    for m, t in sides:
        ready = ready and every <= {p for (p,) in conn.execute(sa.select(c.practice).where(
            c.grain == GRAIN, c.month == m, c.week == t.isoformat(), c.service_line == MARK))}
    out = SameDays(month, through, today, ready, columns)
    if not out.ready:
        return out
    cols = [c[d] for d in columns]
    n = len(columns)
    for (m, t), into in zip(sides, (out.cells, out.current), strict=True):
        q = (sa.select(*cols, *[sa.func.sum(c[k]) for k in MEASURES])
             .where(c.grain == GRAIN, c.month == m, c.week == t.isoformat(), c.service_line != MARK).group_by(*cols))
        for row in conn.execute(q):
            into[tuple(row[:n])] = Counter({k: int(v) for k, v in zip(MEASURES, row[n:], strict=True) if v})
    return out


def medians_by(conn: sa.Connection, same: SameDays, keep: list[str], current: bool = False
               ) -> dict[tuple[Any, ...], dict[str, float]]:
    """Exact medians of the day histograms per slice of the store columns ``keep`` (of the prior month's side, or
    with ``current`` of the current month's)."""
    month, through = (same.today.strftime("%Y-%m"), same.today) if current else (same.month, same.through)
    where = "grain = :g AND month = :m AND week = :w"
    return medians(conn, list(keep), where, {"g": GRAIN, "m": month, "w": through.isoformat()})


class PartialFigures(Figures):
    """A slice's figures over some days of a month: what is no sum of days is None, and noted in ``unkept``."""

    unkept: set[str]

    def _not_by_day(self, what: str) -> None:
        self.unkept.add(what)

    def days_in_ar(self) -> float | None:
        self._not_by_day("ar")
        return None

    def ar_over_90(self) -> float | None:
        self._not_by_day("ar")
        return None

    def retention(self) -> float | None:
        self._not_by_day("retention")
        return None

    def costs(self) -> str | None:
        self._not_by_day("costs")
        return None

    def margin(self) -> str | None:
        self._not_by_day("costs")
        return None

    def margin_rate(self) -> float | None:
        self._not_by_day("costs")
        return None


def project(cells: dict[tuple[str, ...], Counter[str]], keep_idx: list[int], skip: frozenset[str]
            ) -> dict[tuple[str, ...], Counter[str]]:
    """The kept sums (one side's ``cells``) by the columns at ``keep_idx``, without the sites in ``skip`` (the site
    is first)."""
    out: dict[tuple[str, ...], Counter[str]] = defaultdict(Counter)
    for dvals, figures in cells.items():
        if dvals[0] not in skip:
            out[tuple(dvals[i] for i in keep_idx)].update(figures)
    return out


def compare_values(sums: dict[frozenset[str], dict[tuple[str, ...], Counter[str]]], key: tuple[str, ...],
                   skips: dict[str, frozenset[str]], medians_: dict[str, float],
                   catalog: list[Any], reasons: dict[str, str], site: str | None = None) -> dict[str, Any]:
    """Each KPI's value over the same days for the slice ``key`` (``sums``: ``project`` by each KPI's left-out
    sites; ``medians_``: the slice's day medians; ``site``: the slice's site, if it has one); ``reasons`` collects
    the KPIs not compared, and why."""
    values: dict[str, Any] = {}
    for kpi in catalog:
        skip = skips.get(kpi.id, frozenset())
        if site is not None and site in skip:  # a site left out of a KPI has no figure for it (coverage)
            values[kpi.id] = None
            continue
        found = sums[skip].get(key, Counter())
        fig = PartialFigures(dict(found), medians=medians_)
        fig.unkept = set()
        values[kpi.id] = kpi.compute(fig)
        for what in fig.unkept:
            reasons[kpi.id] = NOT_BY_DAY[what]
    return values
