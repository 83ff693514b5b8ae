"""The report engine: KPIs for any slicing, read from the rollups (never from raw rows).

``by`` names any of the dimensions ``site``, ``location``, ``provider``,
``service_line``, ``financial_class`` and at most one period (``month``,
``quarter``, ``year``, ``week``). The engine reads the coarsest rollup grain that
answers the request, grouped by month (or, for weeks, by the rollups' week column,
which sums a straddling week's rows from both of its month cells), folds months into
the period in Python, then lets each KPI compute its value from the slice's aggregated
figures. Dates ``from``/``to`` select whole months (the months that contain them), or
whole ISO weeks (Monday to Sunday) when the period is ``week``.
"""

from __future__ import annotations

import bisect
import calendar
import datetime as dt
import functools
import itertools
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from hub.errors import ValidationError
from hub.model.tables import practices
from hub.plugins import load_plugins
from hub.reports import same_days
from hub.reports.attribution import UNATTRIBUTED
from hub.reports.catalog import BUILTIN_KPIS
from hub.reports.coverage import carried, sites_left_out
from hub.reports.figures import COSTED, ArFigures, Figures, money
from hub.reports.medians import medians
from hub.reports.periods import default_period, describe, today_at_sites
from hub.reports.providers import directory as provider_directory
from hub.reports.rollups import freshness
from hub.reports.tables import (
    FINE,
    MEASURES,
    SITE_WEEK_GRAIN,
    WEEKLY_THIRD_AVAILABLE,
    report_cells,
    report_credits,
    report_medians,
    report_retention,
)

DIMENSIONS = {"site": "practice", "location": "location", "provider": "provider",
              "service_line": "service_line", "financial_class": "financial_class"}
PERIODS = ("month", "quarter", "year", "week")
SITE_GRAIN_DIMS = {"site", "service_line"}
Key = tuple[str, ...]


@dataclass
class Report:
    generated_at: str
    date_from: str
    date_to: str
    by: list[str]
    definitions: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    total: list[dict[str, Any]]
    site_median: list[dict[str, Any]]
    sites: list[dict[str, Any]]
    kpi_ids: list[str] = field(default_factory=list)
    as_of: str = ""  # every change stored before this UTC time is in the figures (rollups.freshness)
    pending_cells: int = 0  # (practice, month) cells changed since and waiting for the background refresh
    today: str = ""  # the date at the sites the periods' completeness is judged by (hub.reports.periods)
    periods: list[dict[str, Any]] = field(default_factory=list)  # the periods shown, complete or not
    default_period: str | None = None  # the last complete period: the one a view opens on
    left_out: dict[str, dict[str, str]] = field(default_factory=dict)  # KPI → site → why it has no data
    providers: list[dict[str, Any]] | None = None  # slicing by provider: each key shown, named (hub.reports.providers)

    def to_dict(self) -> dict[str, Any]:
        return {"generated_at": self.generated_at, "as_of": self.as_of, "pending_cells": self.pending_cells,
                "from": self.date_from, "to": self.date_to, "by": self.by,
                "definitions": self.definitions, "rows": self.rows, "total": self.total,
                "site_median": self.site_median, "sites": self.sites, "today": self.today,
                "periods": self.periods, "default_period": self.default_period, "left_out": self.left_out,
                **({"providers": self.providers} if self.providers is not None else {})}


def parse_by(by: str | Sequence[str]) -> tuple[str, ...]:
    parts = [p.strip() for p in (by.split(",") if isinstance(by, str) else by) if p.strip()]
    known = [*DIMENSIONS, *PERIODS]
    for p in parts:
        if p not in known:
            raise ValidationError(f"unknown dimension {p[:40]!r} (known: {', '.join(known)})", location="by")
    if len(set(parts)) != len(parts):
        raise ValidationError("a dimension is named twice", location="by")
    if sum(p in PERIODS for p in parts) > 1:
        raise ValidationError("at most one period (month, quarter, year, week)", location="by")
    return tuple(parts)


YEARS = (1900, 2999)  # the years a report may span: a date outside them is a typo (and 9999 has no next week)


def _month(value: str | dt.date | None) -> str | None:
    if value is None:
        return None
    text = value.isoformat() if isinstance(value, dt.date) else str(value)
    try:
        day = dt.date.fromisoformat(text[:10] if len(text) >= 10 else text + "-01")
    except ValueError:
        raise ValidationError(f"not a date (YYYY-MM-DD): {text[:40]!r}") from None
    _in_years(day)
    return text[:7]


def _date(value: str | dt.date) -> dt.date:
    text = value.isoformat() if isinstance(value, dt.date) else str(value)
    try:
        day = dt.date.fromisoformat(text[:10])
    except ValueError:
        raise ValidationError(f"not a date (YYYY-MM-DD): {text[:40]!r}") from None
    return _in_years(day)


def _in_years(day: dt.date) -> dt.date:
    if not YEARS[0] <= day.year <= YEARS[1]:
        raise ValidationError(f"{day.isoformat()} is outside the years a report spans ({YEARS[0]} to {YEARS[1]})")
    return day


def _monday(day: dt.date) -> str:
    return (day - dt.timedelta(days=day.weekday())).isoformat()


def week_name(monday: str) -> str:
    """The ISO name of the week that starts on ``monday`` (the rollups' week column): "2025-W09"."""
    year, week, _ = dt.date.fromisoformat(monday).isocalendar()
    return f"{year}-W{week:02d}"


def _period(month: str, kind: str | None) -> str:
    """The period a rollup unit (a month, or a week's Monday when ``kind`` is week) belongs to."""
    if kind == "month":
        return month
    if kind == "week":
        return week_name(month)
    if kind == "quarter":
        return f"{month[:4]}-Q{(int(month[5:7]) + 2) // 3}"
    if kind == "year":
        return month[:4]
    return ""


def _stored_period(unit: str, kind: str) -> str:
    """The name ``report_retention`` keeps a period under (weeks by their Monday)."""
    return unit if kind == "week" else _period(unit, kind)


def _shift(month: str, delta: int) -> str:
    i = int(month[:4]) * 12 + int(month[5:7]) - 1 + delta
    return f"{i // 12:04d}-{i % 12 + 1:02d}"


def _num(value: Any) -> int:
    return int(value or 0)


class _Slices:
    """Aggregated figures per slice key (dimension values + period)."""

    def __init__(self) -> None:
        self.sums: dict[Key, Counter[str]] = defaultdict(Counter)
        self.end_month: dict[Key, str] = {}

    def note_month(self, key: Key, month: str) -> None:
        if month > self.end_month.get(key, ""):
            self.end_month[key] = month


def compute_report(engine: sa.Engine, *, by: str | Sequence[str] = ("site", "month"),
                   date_from: str | dt.date | None = None, date_to: str | dt.date | None = None,
                   kpis: Iterable[str] | None = None, plugins: Any = None, today: dt.date | None = None) -> Report:
    by_dims = parse_by(by)
    dims = [d for d in by_dims if d in DIMENSIONS]
    period = next((p for p in by_dims if p in PERIODS), None)
    catalog = _catalog(plugins, kpis)
    site_level = set(dims) <= SITE_GRAIN_DIMS
    unit = "week" if period == "week" else "month"  # the rollup column the slices are made of
    grain = ("site" if unit == "month" else SITE_WEEK_GRAIN) if site_level else "fine"
    # Only reads: the committed rollups, however current they are, and how current that is. Cells changed
    # since are recomputed in the background (hub.reports.background) or by the command that reads.
    with engine.connect() as conn:
        fresh = freshness(conn)  # first: a refresh that commits while the figures are read only makes them newer
        day = today or today_at_sites(conn)
        span = _span(conn, unit, date_from, date_to, day)
        fetched = ["site", *rest_of(dims)]  # by site first, always: a site may have to be left out of a figure
        data = _fetch(conn, grain, fetched, span)
        named = (provider_directory(conn, {dvals[fetched.index("provider")] for dvals, _ in data.cells})
                 if "provider" in fetched else None)
        rest = [d for d in dims if d != "site"]
        skips = sites_left_out(carried(conn, plugins), catalog)
        medians = {tuple(keep): _medians(conn, grain, list(keep), period, span)
                   for keep in {tuple(dims), tuple(rest)}}  # the same when there is no site to leave out
        retention = _fetch_retention(conn, period, span) if period and site_level else None
        sites = [{"slug": r.slug, "name": r.name, "status": r.status}
                 for r in conn.execute(sa.select(practices.c.slug, practices.c.name, practices.c.status)
                                       .order_by(practices.c.slug))]
        # the month in progress is compared with the same days of the month before, kept by the refresh
        current = day.strftime("%Y-%m")
        same = (same_days.read(conn, [DIMENSIONS[d] for d in fetched], day)
                if period == "month" and span.lo <= current <= span.hi else None)
        same_medians = ({(tuple(keep), side): same_days.medians_by(conn, same, [DIMENSIONS[d] for d in keep], side)
                         for keep in {tuple(dims), tuple(rest)} for side in (False, True)}
                        if same is not None and same.ready else {})  # side: the current month's (True)
    lo, hi = span.lo, span.hi

    def build(keep: list[str], skip: frozenset[str] = frozenset()) -> list[tuple[dict[str, Any], Figures]]:
        idx = [fetched.index(d) for d in keep]
        slices = _Slices()
        for (dvals, month), sums in data.cells.items():
            if not lo <= month <= hi or (skip and dvals[0] in skip):
                continue
            key = (*[dvals[i] for i in idx], _period(month, period))
            slices.sums[key].update(sums)
            slices.note_month(key, month)
        out = []
        for key in sorted(slices.sums, key=lambda k: tuple(str(x) for x in k)):
            fig = Figures(dict(slices.sums[key]), medians=medians[tuple(keep)].get(key, {}),
                          costs_allowed=site_level and unit == "month")  # costs are monthly figures
            if retention is not None:
                site = key[keep.index("site")] if "site" in keep else "*"
                line = key[keep.index("service_line")] if "service_line" in keep else "*"
                fig.retention_counts = retention.get((site, line, key[-1]), (0, 0))
            end = hi if period is None else min(slices.end_month[key] if period in ("month", "week") else
                                                _period_end(key[-1], period), hi)
            fig.ar = data.ar(tuple(key[:-1]), idx, end, skip)
            # records with no service line are a bucket of their own, named so (hub.reports.attribution)
            slice_ = {d: (key[i] or (UNATTRIBUTED if d == "service_line" else None)) for i, d in enumerate(keep)}
            if period:
                slice_[period] = key[-1]
            out.append((slice_, fig))
        return out

    def table(keep: list[str]) -> list[dict[str, Any]]:
        """The slices' values; a KPI some sites cannot answer is computed without them (null where only they are)."""
        without: dict[frozenset[str], dict[tuple[Any, ...], Figures]] = {}
        out = []
        for slice_, fig in build(keep):
            values = {}
            for k in catalog:
                skip = frozenset(skips.get(k.id, ()))
                if skip and skip not in without:
                    without[skip] = {tuple(s.items()): f for s, f in build(keep, skip)}
                found = without[skip].get(tuple(slice_.items())) if skip else fig
                values[k.id] = None if found is None else k.compute(found)
            out.append({"slice": slice_, "values": values})
        return out

    rows = table(dims)
    total = table(rest)
    site_median = _site_medians(rows, rest, period, catalog) if "site" in dims else []
    comparison = None
    if same is not None:
        comparison = same.describe(current)
        comparison["not_compared"] = _compare_same_days(
            same, current, [(rows, dims), (total, rest)], site_median, fetched, rest, skips, same_medians, catalog)
    periods = describe((r["slice"][period] for r in total), period, day, catalog, comparison) if period else []
    complete = {p["period"]: p["complete"] for p in periods}
    for row in itertools.chain(rows, total, site_median):  # each row says whether its period is over
        if period:
            row["complete"] = complete.get(row["slice"][period], True)
    return Report(generated_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                  date_from=span.first_day, date_to=span.last_day, by=list(by_dims),
                  definitions=[k.definition() for k in catalog], rows=rows, total=total, site_median=site_median,
                  sites=sites, kpi_ids=[k.id for k in catalog], as_of=fresh.as_of, pending_cells=fresh.pending_cells,
                  today=day.isoformat(), periods=periods, default_period=default_period(periods), left_out=skips,
                  providers=named)


def _compare_same_days(same: same_days.SameDays, current: str, tables: list[tuple[list[dict[str, Any]], list[str]]],
                       site_median: list[dict[str, Any]], fetched: list[str], rest: list[str],
                       skips: dict[str, dict[str, str]],
                       same_medians: dict[tuple[tuple[str, ...], bool], Any], catalog: list[Any]) -> dict[str, str]:
    """Give each row of the month in progress its ``compare``: the same KPIs over the same days of the month
    before (``values``) and over the current month's days so far, bookings ahead left out (``current``), like for
    like (``hub.reports.same_days``). Returns the KPIs that have no such figure, and why."""
    head = {"basis": "same_days", "period": same.month, "first_day": f"{same.month}-01",
            "last_day": same.through.isoformat(), "through_day": same.through.day,
            "current_first_day": f"{current}-01", "current_last_day": same.today.isoformat()}
    reasons: dict[str, str] = {}
    skip_sets = {kpi: frozenset(sites) for kpi, sites in skips.items()}
    compared: dict[str, list[dict[str, Any]]] = {"values": [], "current": []}
    for table_rows, keep in tables:
        idx = [fetched.index(d) for d in keep]
        sides = {name: ({skip: same_days.project(cells, idx, skip) for skip in {frozenset(), *skip_sets.values()}}
                        if same.ready else {})
                 for name, cells in (("values", same.cells), ("current", same.current))}
        for row in table_rows:
            if row["slice"].get("month") != current:
                continue
            entry: dict[str, Any] = {**head, "values": None, "current": None}
            if same.ready:
                key = tuple(_stored(d, row["slice"][d]) for d in keep)
                for name, sums in sides.items():
                    entry[name] = same_days.compare_values(
                        sums, key, skip_sets, same_medians.get((tuple(keep), name == "current"), {}).get(key, {}),
                        catalog, reasons, row["slice"].get("site"))
                    if table_rows is tables[0][0] and "site" in keep:  # the sites' rows: their median below
                        compared[name].append({"slice": row["slice"], "values": entry[name]})
            row["compare"] = entry
    if site_median:  # the median of the sites' same-days figures, as the site median of the figures themselves
        medians_ = {name: {tuple(sorted(r["slice"].items())): r["values"]
                           for r in _site_medians(rows, rest, "month", catalog)} for name, rows in compared.items()}
        for row in site_median:
            if row["slice"].get("month") == current:
                key_ = tuple(sorted(row["slice"].items()))
                row["compare"] = {**head, **{name: m.get(key_) if same.ready else None for name, m in medians_.items()}}
    return dict(sorted(reasons.items()))


def _stored(dim: str, value: Any) -> str:
    """A slice's dimension value as the rollups keep it (the inverse of ``build``'s naming)."""
    if value is None or (dim == "service_line" and value == UNATTRIBUTED):
        return ""
    return str(value)


def rest_of(dims: list[str]) -> list[str]:
    return [d for d in dims if d != "site"]


@dataclass
class _Span:
    """The units (months, or weeks by their Monday) a report covers, and the months that hold them."""

    unit: str
    lo: str
    hi: str
    month_lo: str
    month_hi: str

    @property
    def first_day(self) -> str:
        return self.lo if self.unit == "week" else f"{self.lo}-01"

    @property
    def last_day(self) -> str:
        if self.unit == "week":
            return (dt.date.fromisoformat(self.hi) + dt.timedelta(days=6)).isoformat()
        return _month_last_day(self.hi)


def _span(conn: sa.Connection, unit: str, date_from: str | dt.date | None, date_to: str | dt.date | None,
          day: dt.date) -> _Span:
    # without a `to`, the span ends with the current period: bookings beyond it never set it (hub.reports.periods)
    today = day.isoformat()
    if unit == "month":
        lo, hi = _month(date_from), _month(date_to)
        if lo is None or hi is None:
            # the coarse grain holds a row for every month the fine grain does, and its rows are few
            # (the primary key leads with the grain): the fine rows grow with the data
            c = report_cells.c
            first, last = conn.execute(sa.select(sa.func.min(c.month), sa.func.max(c.month))
                                       .where(c.grain == "site")).one()
            lo, hi = lo or first or today[:7], hi or min(last or today[:7], today[:7])
            lo, hi = (min(lo, hi), hi) if date_from is None else (lo, max(lo, hi) if date_to is None else hi)
        if lo > hi:
            raise ValidationError(f"from ({lo}) is after to ({hi})")
        return _Span(unit, lo, hi, lo, hi)
    wlo = _monday(_date(date_from)) if date_from is not None else None
    whi = _monday(_date(date_to)) if date_to is not None else None
    if wlo is None or whi is None:
        c = report_cells.c
        first, last = conn.execute(sa.select(sa.func.min(c.week), sa.func.max(c.week))
                                   .where(c.grain == SITE_WEEK_GRAIN, c.week != "")).one()
        wlo, whi = wlo or first or _monday(day), whi or min(last or _monday(day), _monday(day))
        wlo, whi = (min(wlo, whi), whi) if date_from is None else (wlo, max(wlo, whi) if date_to is None else whi)
    if wlo > whi:
        raise ValidationError(f"from (week of {wlo}) is after to (week of {whi})")
    sunday = (dt.date.fromisoformat(whi) + dt.timedelta(days=6)).isoformat()
    return _Span(unit, wlo, whi, wlo[:7], sunday[:7])


def _month_last_day(month: str) -> str:
    year, mon = int(month[:4]), int(month[5:7])
    return f"{month}-{calendar.monthrange(year, mon)[1]:02d}"


def _period_end(period_value: str, kind: str) -> str:
    if kind == "quarter":
        return f"{period_value[:4]}-{int(period_value[-1]) * 3:02d}"
    return f"{period_value}-12"


def _catalog(plugins: Any, ids: Iterable[str] | None) -> list[Any]:
    if plugins is None:
        plugins = load_plugins()
    registry = list(plugins.kpis)
    if not registry:
        registry = list(BUILTIN_KPIS)
    if ids is None:
        return registry
    wanted = list(ids)
    known = {k.id: k for k in registry}
    missing = [i for i in wanted if i not in known]
    if missing:
        raise ValidationError(f"unknown KPI id(s): {', '.join(missing)}")
    return [known[i] for i in wanted]


@dataclass
class _Data:
    """Figures by unit: a month ("YYYY-MM"), or a week by its Monday ("YYYY-MM-DD") for week reports."""

    dims: list[str]
    unit: str
    cells: dict[tuple[Key, str], Counter[str]]
    charges: dict[Key, dict[str, int]]  # full dims → unit → charges cents (all history to `hi`)
    credits: dict[Key, list[tuple[str, str, int]]]  # full dims → (service unit, paid unit, cents)

    projections: dict[tuple[tuple[int, ...], frozenset[str]], dict[Key, list[Key]]] = field(default_factory=dict)
    ledgers: dict[tuple[tuple[int, ...], Key, frozenset[str]], _Ledger] = field(default_factory=dict)

    def _members(self, idx: list[int], key: Key, skip: frozenset[str]) -> list[Key]:
        groups = self.projections.get((tuple(idx), skip))
        if groups is None:
            groups = defaultdict(list)
            for dvals in self.charges:
                if dvals[0] not in skip:  # the site is the first dimension (compute_report)
                    groups[tuple(dvals[i] for i in idx)].append(dvals)
            self.projections[(tuple(idx), skip)] = groups
        return groups.get(key, [])

    def _shift(self, unit: str, delta: int) -> str:
        return _shift_unit(self.unit, unit, delta)

    def _ledger(self, idx: list[int], key: Key, skip: frozenset[str]) -> _Ledger | None:
        """The slice's charges and credits as running totals, built once for all the slice's periods."""
        found = self.ledgers.get((tuple(idx), key, skip))
        if found is None:
            members = self._members(idx, key, skip)
            if not members:
                return None
            charges: Counter[str] = Counter()
            settled: Counter[str] = Counter()  # credits by the first unit whose end they count at
            aged: Counter[str] = Counter()  # credits by the first unit whose aged A/R they count in
            for dvals in members:
                charges.update(self.charges[dvals])
                for served, paid, cents in self.credits.get(dvals, ()):
                    settled[max(served, paid)] += cents
                    aged[max(self._shift(served, RECENT_UNITS[self.unit]), paid)] += cents
            found = _Ledger(_Running(charges), _Running(settled), _Running(aged))
            self.ledgers[(tuple(idx), key, skip)] = found
        return found

    def ar(self, key: Key, idx: list[int], end: str, skip: frozenset[str] = frozenset()) -> ArFigures | None:
        """A/R at the end of the unit ``end`` for the slice whose dimension values are ``key``.

        The last 90 days are the month and the two before it, or for weeks the week and the
        12 before it (91 days); older service units are the aged A/R."""
        ledger = self._ledger(idx, key, skip)
        if ledger is None:
            return None
        recent_from = self._shift(end, 1 - RECENT_UNITS[self.unit])
        charged, charged_before = ledger.charges.upto(end), ledger.charges.before(recent_from)
        balance = charged - ledger.settled.upto(end)
        aged = charged_before - ledger.aged.upto(end)
        if self.unit == "week":
            days = 91
        else:
            days = sum(calendar.monthrange(int(m[:4]), int(m[5:7]))[1] for m in (_shift(end, -k) for k in range(3)))
        return ArFigures(balance, aged, charged - charged_before, days)


@functools.lru_cache(maxsize=1 << 14)  # a report shifts the same few hundred units over and over
def _shift_unit(kind: str, unit: str, delta: int) -> str:
    if kind == "week":
        return (dt.date.fromisoformat(unit) + dt.timedelta(weeks=delta)).isoformat()
    return _shift(unit, delta)


RECENT_UNITS = {"month": 3, "week": 13}  # the units that make up "the last 90 days" of A/R


class _Running:
    """Cents by unit, summed up to any unit by a binary search."""

    def __init__(self, cents: Counter[str]) -> None:
        self.units = sorted(cents)
        self.sums = list(itertools.accumulate(cents[u] for u in self.units))

    def upto(self, unit: str) -> int:
        i = bisect.bisect_right(self.units, unit)
        return self.sums[i - 1] if i else 0

    def before(self, unit: str) -> int:
        i = bisect.bisect_left(self.units, unit)
        return self.sums[i - 1] if i else 0


@dataclass
class _Ledger:
    charges: _Running
    settled: _Running
    aged: _Running


def _of_grain(keyed: sa.Table, grain: str, part: str) -> tuple[sa.Table, list[Any]]:
    """The table a grain's rows of cells, histograms or credits (``part``) are in, and the condition picking them:
    the fine grain has tables of its own (``report_fine_*``)."""
    if grain == "fine":
        return FINE[part], []
    return keyed, [keyed.c.grain == grain]


def _fetch(conn: sa.Connection, grain: str, dims: list[str], span: _Span) -> _Data:
    t, of_grain = _of_grain(report_cells, grain, "cells")
    cols = [t.c[DIMENSIONS[d]] for d in dims]
    unit = t.c[span.unit]
    measure_cols = [sa.func.sum(t.c[m]).label(m) for m in MEASURES]
    # margin counts the payments of the site × service line × months whose costs were imported (a row of the
    # site grain is one of those): so the service lines' margins add up to the site's and the MSO's
    measure_cols.append(sa.func.sum(sa.case((t.c.cost_cells > 0, t.c.payments_cents), else_=0)).label(COSTED))
    where = [*of_grain, t.c.month <= span.month_hi]
    if span.unit == "week":
        where.append(t.c.week != "")  # monthly-only rows (costs) belong to no week
    q = sa.select(*cols, unit, *measure_cols).where(*where).group_by(*cols, unit)
    cells: dict[tuple[Key, str], Counter[str]] = {}
    charges: dict[Key, dict[str, int]] = defaultdict(dict)
    n = len(dims)
    for row in conn.execute(q):
        dvals, at = tuple(row[:n]), row[n]
        sums = Counter({m: _num(v) for m, v in zip((*MEASURES, COSTED), row[n + 1:], strict=True) if v})
        charges[dvals][at] = sums.get("charges_cents", 0)
        if at >= span.lo:
            cells[(dvals, at)] = sums
    c, of_grain = _of_grain(report_credits, grain, "credits")
    ccols = [c.c[DIMENSIONS[d]] for d in dims]
    served, paid = (c.c.week, c.c.paid_week) if span.unit == "week" else (c.c.month, c.c.paid_month)
    credits: dict[Key, list[tuple[str, str, int]]] = defaultdict(list)
    for row in conn.execute(sa.select(*ccols, served, paid, sa.func.sum(c.c.credits_cents))
                            .where(*of_grain, c.c.month <= span.month_hi)
                            .group_by(*ccols, served, paid)):
        credits[tuple(row[:n])].append((row[n], row[n + 1], _num(row[n + 2])))
    return _Data(dims, span.unit, cells, dict(charges), dict(credits))


def _period_sql(kind: str | None) -> str | None:
    if kind in ("month", "week"):
        return kind
    if kind == "quarter":
        return "substr(month, 1, 4) || '-Q' || CAST((CAST(substr(month, 6, 2) AS INTEGER) + 2) / 3 AS VARCHAR(1))"
    if kind == "year":
        return "substr(month, 1, 4)"
    return None


def _medians(conn: sa.Connection, grain: str, keep: list[str], period: str | None, span: _Span
             ) -> dict[Key, dict[str, float]]:
    """Exact medians of every histogram metric per slice: kept ones where they exist, else from the histograms."""
    if period in ("month", "week") and "site" in keep and set(keep) <= SITE_GRAIN_DIMS:
        summary = "site" if "service_line" in keep else "pm"
        t = report_medians
        at = t.c[span.unit]
        out: dict[Key, dict[str, float]] = defaultdict(dict)
        for row in conn.execute(sa.select(t).where(t.c.grain == summary, at >= span.lo, at <= span.hi)):
            key = (*[getattr(row, DIMENSIONS[d]) for d in keep],
                   week_name(row.week) if period == "week" else row.month)
            out[key][row.metric] = row.median
        return out
    exprs = [DIMENSIONS[d] for d in keep]
    period_sql = _period_sql(period)
    if period_sql:
        exprs.append(period_sql)
    fine = grain == "fine"  # the fine histograms have a table of their own
    where = f"{'' if fine else 'grain = :g AND '}month >= :mlo AND month <= :mhi AND metric <> :skip"
    params = {"g": grain, "mlo": span.month_lo, "mhi": span.month_hi, "lo": span.lo, "hi": span.hi}
    if period == "week":  # a week's third next available is measured from its Monday
        where += " AND week >= :lo AND week <= :hi"
        params["skip"] = "third_available_days"
    else:
        params["skip"] = WEEKLY_THIRD_AVAILABLE
    found = medians(conn, exprs, where, params, table=FINE["hist"].name if fine else "report_hist")
    if period == "week":
        return {(*key[:-1], week_name(key[-1])): {("third_available_days" if m == WEEKLY_THIRD_AVAILABLE else m): v
                                                  for m, v in values.items()} for key, values in found.items()}
    return {(key if period_sql else (*key, "")): values for key, values in found.items()}


def _fetch_retention(conn: sa.Connection, period: str, span: _Span) -> dict[tuple[str, str, str], Any]:
    """(cohort, retained) by (practice, service line, period name as the report shows it)."""
    t = report_retention
    lo, hi = _stored_period(span.lo, period), _stored_period(span.hi, period)
    out: dict[tuple[str, str, str], Any] = {}
    for row in conn.execute(sa.select(t.c.practice, t.c.service_line, t.c.period, t.c.cohort, t.c.retained)
                            .where(t.c.period_kind == period, t.c.period >= lo, t.c.period <= hi)):
        name = week_name(row.period) if period == "week" else row.period
        out[(row.practice, row.service_line, name)] = (int(row.cohort), int(row.retained))
    return out


def _site_medians(rows: list[dict[str, Any]], rest: list[str], period: str | None,
                  catalog: list[Any]) -> list[dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        key = tuple(row["slice"].get(d) for d in [*rest, *([period] if period else [])])
        groups[key].append(row)
    out = []
    for key in sorted(groups, key=lambda k: tuple(str(x) for x in k)):
        members = groups[key]
        slice_ = {k: v for k, v in members[0]["slice"].items() if k != "site"}
        values: dict[str, Any] = {}
        for kpi in catalog:
            present = [r["values"][kpi.id] for r in members if r["values"].get(kpi.id) is not None]
            if not present:
                values[kpi.id] = None
            elif isinstance(present[0], str):
                values[kpi.id] = money(statistics.median(Decimal(v) for v in present) * 100)
            else:
                med = statistics.median(present)
                values[kpi.id] = round(med, 6) if isinstance(med, float) else med
        out.append({"slice": slice_, "values": values})
    return out
