"""Visits and the per-patient figures that are not simple sums.

A visit is a completed appointment (fulfilled, arrived, checked-in) or a finished
encounter not tied to a completed appointment. ``report_visits`` keeps one row per
visit with an opaque patient key (the enterprise id that links a patient across
practices, else ``practice:patient source id``). When a batch touches some
(practice, month) cells, their visits are rebuilt, and then, for every patient key
involved, the patient's whole visit history is re-read so that:

- ``is_new`` (no visit in the same service line anywhere in the MSO in the 3 years
  before) is right even when an older visit arrives late, and
- ``converted`` (a consult followed by a procedure in the same service line within
  90 days) is right when the procedure arrives after the consult, and
- retention counts change by exact deltas (old history's contribution out, new in), for
  every kind of period: month, quarter, year and ISO week,

so distinct-patient figures stay exact without rescanning the store.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from hub.reports.batching import copy_rows, round_trip
from hub.reports.providers import provider_key
from hub.reports.tables import report_retention, report_visits
from hub.store.engine import fetch_by_keys

COMPLETED = ("fulfilled", "arrived", "checked-in")
NEW_PATIENT_YEARS = 3
CONVERSION_DAYS = 90
RETENTION_MONTHS = 12
# each kind of period: how many of its units make up the look-back window ("the 12 months before the period"
# are exactly 12 months, 4 quarters or 1 year; for weeks, the 52 weeks before)
RETENTION_WINDOW = {"month": RETENTION_MONTHS, "quarter": 4, "year": 1, "week": 52}
# the service line whose consult conversion the catalog reports: the MSO vocabulary's code
# (mappings/mso/service_lines.yaml)
COUNTED_CONVERSIONS = "cosmetic_aesthetics"
Cell = tuple[str, str]  # (practice, "YYYY-MM")


class Visit(NamedTuple):
    # a tuple, not a dataclass: a catch-up after a backfill makes and copies a million of them
    kind: str
    practice: str
    source_id: str
    patient_key: str
    location: str
    provider: str
    service_line: str
    visit_category: str
    visit_date: str
    is_new: bool = False
    converted: bool = False
    id: int | None = None

    @property
    def month(self) -> str:
        return self.visit_date[:7]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.practice, self.kind, self.source_id)


def _years_before(d: dt.date, years: int) -> dt.date:
    try:
        return d.replace(year=d.year - years)
    except ValueError:  # 29 February
        return d.replace(year=d.year - years, day=28)


@functools.lru_cache(maxsize=1 << 16)
def _day_facts(day: str) -> tuple[int, str, int]:
    """Of a visit day ("YYYY-MM-DD"): its ordinal, the day NEW_PATIENT_YEARS before it (ISO, so it compares as text
    with the other days), and the ordinal of the last day a procedure converts a consult of that day."""
    d = dt.date.fromisoformat(day)
    return d.toordinal(), _years_before(d, NEW_PATIENT_YEARS).isoformat(), d.toordinal() + CONVERSION_DAYS


def with_flags(visits: list[Visit]) -> list[Visit]:
    """The visits of ONE patient with is_new and converted computed from that history."""
    by_line: dict[str, list[Visit]] = defaultdict(list)
    for v in visits:
        by_line[v.service_line].append(v)
    out = []
    for line_visits in by_line.values():
        days = sorted({v.visit_date for v in line_visits})  # ISO days sort as dates
        procedures = sorted(_day_facts(v.visit_date)[0] for v in line_visits if v.visit_category == "procedure")
        for v in line_visits:
            day = v.visit_date
            ordinal, horizon, last = _day_facts(day)
            i = bisect.bisect_left(days, day)  # days[i - 1] is the last visit day before this one
            is_new = i == 0 or days[i - 1] < horizon
            converted = False
            if procedures and v.visit_category == "consult":
                j = bisect.bisect_left(procedures, ordinal)
                converted = j < len(procedures) and procedures[j] <= last
            out.append(Visit(*v[:9], is_new, converted, v[11]))  # (``_replace``, by name, took twice as long)
    return out


def _month_index(month: str) -> int:  # "YYYY-MM" or a date
    return int(month[:4]) * 12 + int(month[5:7]) - 1


def _month_name(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


@functools.lru_cache(maxsize=1 << 16)  # a batch's patients share few distinct days
def period_index(kind: str, day: str) -> int:
    """The number of the ``kind`` period a date ("YYYY-MM-DD") falls in; consecutive periods differ by 1."""
    if kind == "month":
        return _month_index(day)
    if kind == "quarter":
        return int(day[:4]) * 4 + (int(day[5:7]) - 1) // 3
    if kind == "year":
        return int(day[:4])
    return (dt.date.fromisoformat(day).toordinal() - 1) // 7  # day 1 (0001-01-01) is a Monday


def period_name(kind: str, index: int) -> str:
    """As the rollups store it: "2025-03", "2025-Q1", "2025", or a week's Monday "2025-02-24"."""
    if kind == "month":
        return _month_name(index)
    if kind == "quarter":
        return f"{index // 4:04d}-Q{index % 4 + 1}"
    if kind == "year":
        return f"{index:04d}"
    return dt.date.fromordinal(index * 7 + 1).isoformat()


Scope = tuple[str, str, str]  # (practice or '*', service line or '*', period kind)


_KINDS = tuple(RETENTION_WINDOW)


@functools.lru_cache(maxsize=1 << 16)
def _day_periods(day: str) -> tuple[int, ...]:
    """The index of each kind of period (``_KINDS``, in order) a day falls in."""
    return tuple(period_index(kind, day) for kind in _KINDS)


def _scope_days(seen: Iterable[tuple[str, str, str]], pairs: set[tuple[str, str]], practices: set[str],
                lines: set[str]) -> dict[tuple[str, str], frozenset[str]]:
    """One patient's visit days, from the (practice, service line, day) of their visits, in the scopes a change
    of those (practice, line) ``pairs`` can move: each pair's own, its practices' and lines' across the other, and
    the MSO's (as (practice or '*', line or '*')). (A patient seen in ten practices has some fifty scopes; a change in
    one moves four of them.)"""
    days: dict[tuple[str, str], set[str]] = defaultdict(set)
    for practice, line, day in seen:
        if (practice, line) in pairs:
            days[(practice, line)].add(day)
        if practice in practices:
            days[(practice, "*")].add(day)
        if line in lines:
            days[("*", line)].add(day)
        days[("*", "*")].add(day)
    return {scope: frozenset(its_days) for scope, its_days in days.items()}


def _periods(days: frozenset[str] | None) -> Sequence[frozenset[int]]:
    """The periods of each kind (``_KINDS``, in order) these days fall in; none for no days."""
    if not days:
        return _NO_PERIODS
    if len(days) == 1:  # most scopes of most patients: one visit day
        for day in days:
            return _day_period_sets(day)
    indexes = [_day_periods(day) for day in days]
    return [frozenset([index[k] for index in indexes]) for k in range(len(_KINDS))]


_NO_PERIODS: tuple[frozenset[int], ...] = (frozenset(),) * len(_KINDS)


@functools.lru_cache(maxsize=1 << 16)
def _day_period_sets(day: str) -> tuple[frozenset[int], ...]:
    return tuple(frozenset([index]) for index in _day_periods(day))


Links = frozenset[tuple[int, int | None]]


@functools.lru_cache(maxsize=1 << 16)  # patients share their periods: the same links, made once
def _links(periods: frozenset[int], window: int) -> Links:
    """One patient's visit periods in one scope as (period, the next visit period, or None for none within
    ``window``): each link is what one visit period adds to the counts, whatever the other links."""
    ordered = sorted(periods)
    links = {(x, nxt if nxt - x <= window else None) for x, nxt in zip(ordered, ordered[1:], strict=False)}
    links.add((ordered[-1], None))
    return frozenset(links)


_NO_LINKS: Links = frozenset()


class RetentionDelta:
    """How a set of patients' changes of history move the retention counts, by scope and period index.

    The patient is in period m's cohort when their last visit before m is at most ``window``
    periods before it, and retained when that visit is followed by one in m itself. So each
    visit period x, with the next visit period n, adds the cohort periods x+1 .. min(n, x+window)
    and, when n is within the window, one retained patient in n. A link that is in both the old
    and the new history moves nothing and is skipped; the others are counted by (scope, x, n), which
    many patients share, and turned into counts once (``rows``): the cohort as steps (+1 where a
    stretch of cohort periods starts, -1 after it ends), so a patient seen every week costs a few
    entries, not 52 per visit."""

    def __init__(self) -> None:
        # Links are counted by a group of scopes (``groups``: the scopes of one kind whose days changed alike for
        # a patient, see ``add``): listed as they come, added (``added``) or taken away (``removed``), and counted
        # once (``rows``). A catch-up after a backfill lists millions: ``list.extend`` and ``Counter`` count them
        # in C (counting them as they came took a quarter more time).
        self.added: dict[int, list[tuple[int, int | None]]] = {}
        self.removed: dict[int, list[tuple[int, int | None]]] = {}
        self.groups: list[tuple[Scope, ...]] = []
        self._group_ids: dict[tuple[tuple[tuple[str, str], ...], str], int] = {}

    def add(self, old: list[Visit], new: list[Visit]) -> None:
        """One patient's history changed from ``old`` to ``new`` (every scope and kind of period)."""
        seen_before = {(v.practice, v.service_line, v.visit_date) for v in old}
        seen_after = {(v.practice, v.service_line, v.visit_date) for v in new}
        if seen_before == seen_after:
            return  # the same visit days in the same scopes (a cell recomputed again): no count moves
        pairs = {(practice, line) for practice, line, _ in seen_before ^ seen_after}
        practices, lines = {practice for practice, _ in pairs}, {line for _, line in pairs}
        before = _scope_days(seen_before, pairs, practices, lines) if seen_before else {}
        after = _scope_days(seen_after, pairs, practices, lines) if seen_after else {}
        # scopes whose days changed alike (one practice's patient has the same days in its (practice, line) and
        # (MSO, line) scopes, and in (practice, all lines) and the MSO's) move the same links: counted once
        changes: dict[tuple[frozenset[str] | None, frozenset[str] | None], list[tuple[str, str]]] = {}
        for scope, days in after.items():
            earlier = before.get(scope)
            if earlier != days:
                changes.setdefault((earlier, days), []).append(scope)
        for scope, gone in before.items():
            if scope not in after:
                changes.setdefault((gone, None), []).append(scope)
        added, removed, group_ids = self.added, self.removed, self._group_ids
        for (days_before, days_after), scopes in changes.items():
            members = tuple(scopes)
            for kind, was, now in zip(_KINDS, _periods(days_before), _periods(days_after), strict=True):
                if was == now:
                    continue  # e.g. another day in a month already seen: no month link moves
                group = group_ids.get((members, kind))
                if group is None:
                    group = group_ids[(members, kind)] = len(self.groups)
                    self.groups.append(tuple((practice, line, kind) for practice, line in members))
                    added[group], removed[group] = [], []
                window = RETENTION_WINDOW[kind]
                new_links = _links(now, window) if now else _NO_LINKS
                if was:
                    old_links = _links(was, window)
                    removed[group].extend(old_links - new_links)
                    added[group].extend(new_links - old_links)
                else:
                    added[group].extend(new_links)

    def rows(self) -> dict[tuple[Scope, int], list[int]]:
        """[cohort, retained] changes by (scope, period index): the cohort steps summed up period by period."""
        out: dict[tuple[Scope, int], list[int]] = defaultdict(lambda: [0, 0])
        steps: dict[Scope, dict[int, int]] = defaultdict(dict)
        for group, listed in self.added.items():
            links = Counter(listed)
            links.subtract(self.removed[group])
            for (x, nxt), n in links.items():
                if n:
                    self._step(self.groups[group], x, nxt, n, steps, out)
        for scope, by_index in steps.items():
            ordered = sorted(i for i, n in by_index.items() if n)
            running = 0
            for here, there in zip(ordered, ordered[1:], strict=False):
                running += by_index[here]
                if running:
                    for index in range(here, there):
                        out[(scope, index)][0] += running
        return {key: counts for key, counts in out.items() if counts[0] or counts[1]}

    @staticmethod
    def _step(scopes: tuple[Scope, ...], x: int, nxt: int | None, n: int, steps: dict[Scope, dict[int, int]],
              out: dict[tuple[Scope, int], list[int]]) -> None:
        """Count ``n`` links (x, nxt) of each of ``scopes``: their cohort steps, and the retained in nxt."""
        for scope in scopes:
            window = RETENTION_WINDOW[scope[2]]
            its = steps[scope]
            its[x + 1] = its.get(x + 1, 0) + n
            end = (x + window if nxt is None else nxt) + 1
            its[end] = its.get(end, 0) - n
            if nxt is not None:
                out[(scope, nxt)][1] += n


def _visit_statements(cells: set[Cell], columns: str, *, patients: bool = True, group: str = "") -> tuple[
        dict[str, Any], list[tuple[str, sa.TextClause]]]:
    """The statements that select the visits of these cells, of any practices, one per kind (``columns`` of
    ``{t}``, the kind's alias, and with ``patients`` of the patient ``pt`` and its link ``il``; then ``group``), and
    their parameters: ``:practices``, ``:months`` and the range bound the index scan, ``:cells`` (``practice ||
    month``: a month is seven characters, so a key names one cell) picks exactly the cells."""
    months = sorted({m for _, m in cells})
    lo, hi = months[0], _month_name(_month_index(months[-1]) + 1)
    params = {"practices": sorted({p for p, _ in cells}), "lo": lo, "hi": hi, "months": months,
              "cells": sorted(p + m for p, m in cells)}
    completed = ", ".join(f"'{s}'" for s in COMPLETED)
    join = ("LEFT JOIN patients pt ON pt.practice = {t}.practice AND pt.source_id = {t}.patient_source_id "
            "LEFT JOIN identity_links il ON il.practice = {t}.practice AND il.source_id = {t}.patient_source_id"
            ) if patients else ""
    where = ("{t}.practice IN :practices AND {t}.start >= :lo AND {t}.start < :hi AND substr({t}.start, 1, 7) IN "
             ":months AND {t}.practice || substr({t}.start, 1, 7) IN :cells")
    appt_sql = (f"SELECT {columns} FROM appointments a {join} WHERE {where} AND a.status IN ({completed}) {group}"
                ).format(t="a", provider=provider_key("a", ("provider_npi",)))
    enc_sql = (f"SELECT {columns} FROM encounters e {join} WHERE {where} AND e.status = 'finished' AND NOT EXISTS ("
               f"SELECT 1 FROM appointments a2 WHERE a2.practice = e.practice "
               f"AND a2.source_id = e.appointment_source_id AND a2.status IN ({completed})) {group}"
               ).format(t="e", provider=provider_key("e"))
    expanding: list[sa.BindParameter[Any]] = [sa.bindparam(name, expanding=True)
                                              for name in ("practices", "months", "cells")]
    return params, [(kind, sa.text(sql).bindparams(*expanding))
                    for kind, sql in (("appointment", appt_sql), ("encounter", enc_sql))]


def _select_new_visits(conn: sa.Connection, cells: set[Cell]) -> list[Visit]:
    """The visits of these cells, of any practices, in one statement per kind."""
    # the patient index's enterprise id; before its first run, one a feed or plugin sent
    key = ("COALESCE(il.enterprise_id, pt.enterprise_id, {t}.practice || ':' || "
           "COALESCE({t}.patient_source_id, {t}.source_id))")
    # the provider key: providers across practices by NPI (hub.reports.providers)
    cols = ("{t}.practice, {t}.source_id, " + key + ", COALESCE({t}.location_source_id, ''), {provider},"
            " COALESCE({t}.service_line, ''), COALESCE({t}.visit_category, ''), substr({t}.start, 1, 10)")
    params, statements = _visit_statements(cells, cols)
    out: list[Visit] = []
    for kind, stmt in statements:
        # all at once: a row at a time, the driver's fetch was most of reading a million visits
        out.extend(Visit(kind, *row) for row in conn.execute(stmt, params).all())
    return out


def count_visits(conn: sa.Connection, cells: set[Cell]) -> Counter[Cell]:
    """How many visits each of these cells holds (a rebuild reads as many, with their patients' histories)."""
    params, statements = _visit_statements(cells, "{t}.practice, substr({t}.start, 1, 7), COUNT(*)",
                                           patients=False, group="GROUP BY {t}.practice, substr({t}.start, 1, 7)")
    counts: Counter[Cell] = Counter()
    for _, stmt in statements:
        for practice, month, n in conn.execute(stmt, params):
            counts[(practice, month)] += n
    return counts


_HISTORY_COLUMNS = ("kind, practice, source_id, patient_key, location, provider, service_line, visit_category, "
                    "visit_date, is_new, converted, id")


def _load_history(conn: sa.Connection, keys: set[str]) -> list[Visit]:
    rows = fetch_by_keys(conn, f"SELECT {_HISTORY_COLUMNS} FROM report_visits WHERE patient_key IN :keys", keys)
    return [_history_visit(r) for r in rows]


def _history_visit(r: Sequence[Any]) -> Visit:
    return Visit(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], bool(r[9]), bool(r[10]), r[11])


def _by_patient(visits: Iterable[Visit]) -> dict[str, list[Visit]]:
    out: dict[str, list[Visit]] = defaultdict(list)
    for v in visits:
        out[v.patient_key].append(v)
    return out


class Rebuilt(NamedTuple):
    """What ``rebuild`` did: ``changed``, other cells whose visits changed (their flags, or a visit that moved from
    them into the cells rebuilt); ``held``, how many visits the cells hold; ``retention``, the update of the
    retention counts, still to run in the same transaction. Nothing else reads those counts while the rollups are
    recomputed, so the caller runs it when it likes: a refresh on PostgreSQL runs it (Python, most of a rebuild's
    time) while the server computes the rollups."""

    changed: set[Cell]
    held: int
    retention: Callable[[], None]


class VisitChanges(NamedTuple):
    """A rebuild of ``cells``' visits, read and worked out (``read_changes``) but not yet written (``write_changes``):
    ``changed`` and ``held`` as ``Rebuilt``'s; the rows to insert (tuples of ``_ROW``), the flags to update and the
    ids of the rows of visits that moved into the cells; ``retention(conn)``, the update of the retention counts,
    which it works out first unless ``count_retention()`` did (Python only: a caller runs it while the server is
    busy)."""

    cells: set[Cell]
    changed: set[Cell]
    held: int
    inserts: list[tuple[object, ...]]
    updates: list[dict[str, object]]
    moved: list[int]
    retention: Callable[[sa.Connection], None]
    count_retention: Callable[[], None]


def _nothing() -> None:
    return None


def rebuild(conn: sa.Connection, cells: set[Cell]) -> Rebuilt:
    """Rebuild the visits of ``cells`` (``Rebuilt``: the caller runs its ``retention``): ``read_changes`` then
    ``write_changes``, on one connection."""
    if not cells:
        return Rebuilt(set(), 0, _nothing)
    changes = read_changes(conn, cells)
    write_changes(conn, changes)
    return Rebuilt(changes.changed, changes.held, lambda: changes.retention(conn))


def read_changes(conn: sa.Connection, cells: set[Cell]) -> VisitChanges:
    """Read the visits of ``cells`` and their patients' histories, and work out what rebuilding them changes
    (``VisitChanges``), writing nothing: ``conn`` may be a session of its own, reading the committed rows while the
    refresh's transaction computes the other rollups (``rollups.refresh`` on PostgreSQL).

    A visit that moved months keeps its row in its old cell until that cell is rebuilt, unless a rebuild of
    its new cell comes first (a refresh takes cells one at a time): then the fresh visit replaces that row,
    wherever it is, and the old cell is recomputed with these.

    The cells may be of several practices (a refresh transaction's): their visits are read with one statement each,
    and the patients' histories (those of the cells' patients only, so the memory a rebuild holds grows with the
    cells, not the store) are read once."""
    t = report_visits
    pairs = sorted(cells)
    months = sorted({m for _, m in cells})
    old_keys = set(conn.execute(sa.select(t.c.patient_key).distinct().where(  # the range bounds the index scan
        t.c.practice.in_(sorted({p for p, _ in cells})), t.c.month >= months[0], t.c.month <= months[-1],
        sa.tuple_(t.c.practice, t.c.month).in_(pairs))).scalars())
    fresh = _select_new_visits(conn, cells)
    keys = old_keys | {v.patient_key for v in fresh}
    by_practice: dict[str, set[str]] = defaultdict(set)
    for v in fresh:
        by_practice[v.practice].add(v.source_id)
    for practice, source_ids in by_practice.items():  # rows of these visits elsewhere, under any patient key
        keys.update(row[0] for row in fetch_by_keys(
            conn, "SELECT DISTINCT patient_key FROM report_visits WHERE practice = :p AND source_id IN :keys",
            source_ids, p=practice))
    old = _load_history(conn, keys)
    fresh_keys = {v.key for v in fresh}
    moved = [v for v in old if (v.practice, v.month) not in cells and v.key in fresh_keys]
    kept = [v for v in old if (v.practice, v.month) not in cells and v.key not in fresh_keys]
    new_by_patient = {k: with_flags(vs) for k, vs in _by_patient([*kept, *fresh]).items()}
    old_by_patient = _by_patient(old)

    counted: list[list[dict[str, object]]] = []  # the rows of retention counts moved, once worked out

    def count_retention() -> None:
        if not counted:
            delta = RetentionDelta()
            for k in keys:
                delta.add(old_by_patient.get(k, []), new_by_patient.get(k, []))
            counted.append(_retention_rows(delta))

    def retention(writing: sa.Connection) -> None:
        count_retention()
        _write_retention(writing, counted[0])

    inserts: list[tuple[object, ...]] = []
    updates: list[dict[str, object]] = []
    changed_cells = {(v.practice, v.month) for v in moved}
    old_flags = {v.key: (v.is_new, v.converted) for v in old}
    for visits in new_by_patient.values():
        for v in visits:
            if (v.practice, v.month) in cells:
                inserts.append(_row(v))
            elif old_flags.get(v.key) != (v.is_new, v.converted):
                updates.append({"visit_id": v.id, "new_flag": v.is_new, "converted_flag": v.converted})
                was_new = old_flags.get(v.key, (None, None))[0]
                if was_new != v.is_new or v.service_line == COUNTED_CONVERSIONS:  # else no figure moves
                    changed_cells.add((v.practice, v.month))
    moved_ids = [v.id for v in moved if v.id is not None]  # rows of the history: all have one
    return VisitChanges(set(cells), changed_cells, len(fresh), inserts, updates, moved_ids, retention,
                        count_retention)


def write_changes(conn: sa.Connection, changes: VisitChanges) -> None:
    """Write a rebuild (``read_changes``): the cells' visit rows replaced, moved rows deleted, flags updated."""
    t, cells = report_visits, changes.cells
    with round_trip(conn):  # the writes, none read back
        for practice in sorted({p for p, _ in cells}):  # (practice, month) IN (pairs) made SQLite scan the table
            conn.execute(sa.delete(t).where(t.c.practice == practice,
                                            t.c.month.in_(sorted(m for p, m in cells if p == practice))))
        if changes.moved:
            conn.execute(sa.delete(t).where(t.c.id.in_(changes.moved)))
        if changes.updates:
            conn.execute(sa.update(t).where(t.c.id == sa.bindparam("visit_id"))
                         .values(is_new=sa.bindparam("new_flag"), converted=sa.bindparam("converted_flag")),
                         changes.updates)
    copy_rows(conn, t, _ROW, changes.inserts)


_ROW = ("kind", "practice", "source_id", "patient_key", "location", "provider", "service_line", "visit_category",
        "visit_date", "month", "is_new", "converted")  # the columns of ``_row``'s tuple


def _row(v: Visit) -> tuple[object, ...]:
    return (v.kind, v.practice, v.source_id, v.patient_key, v.location, v.provider, v.service_line, v.visit_category,
            v.visit_date, v.visit_date[:7], v.is_new, v.converted)


def _retention_rows(delta: RetentionDelta) -> list[dict[str, object]]:
    """The ``report_retention`` rows of the counts ``delta`` moves (each added to the row of its key)."""
    return [{"practice": p, "service_line": line, "period_kind": kind, "period": period_name(kind, index),
             "cohort": c, "retained": r} for ((p, line, kind), index), (c, r) in delta.rows().items()
            if c or r]


def _write_retention(conn: sa.Connection, rows: list[dict[str, object]]) -> None:
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        # one statement, the rows as arrays: an executemany sends a statement per row (a refresh of one
        # cell moves about a thousand counts; 40 % of a catch-up's SQL time went to that round trip)
        columns = ("practice", "service_line", "period_kind", "period", "cohort", "retained")
        types = ("text", "text", "text", "text", "bigint", "bigint")
        conn.execute(sa.text(
            f"INSERT INTO report_retention ({', '.join(columns)}) SELECT * FROM unnest("
            + ", ".join(f"CAST(:{c} AS {k}[])" for c, k in zip(columns, types, strict=True))
            + ") ON CONFLICT (practice, service_line, period_kind, period) DO UPDATE SET "
              "cohort = report_retention.cohort + excluded.cohort, "
              "retained = report_retention.retained + excluded.retained"),
            {c: [r[c] for r in rows] for c in columns})
        return
    t = report_retention
    insert = sqlite.insert(t)
    stmt = insert.on_conflict_do_update(index_elements=["practice", "service_line", "period_kind", "period"], set_={
        "cohort": t.c.cohort + insert.excluded.cohort, "retained": t.c.retained + insert.excluded.retained})
    conn.execute(stmt, rows)
