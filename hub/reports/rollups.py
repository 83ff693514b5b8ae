"""Keeping the report rollups up to date: cells marked in each ingest batch's transaction, recomputed later.

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
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa

from hub.gc_pause import gc_paused
from hub.model.kinds import FINANCIAL_CLASS
from hub.reports import visits as visit_rollup
from hub.reports.attribution import charge_joins, charge_service_line
from hub.reports.batching import insert_rows, round_trip
from hub.reports.medians import refresh_summaries
from hub.reports.providers import provider_key
from hub.reports.tables import (
    DIMS,
    MEASURES,
    SITE_WEEK_GRAIN,
    WEEKLY_THIRD_AVAILABLE,
    report_cells,
    report_credits,
    report_dirty,
    report_fine_cells,
    report_fine_credits,
    report_fine_hist,
    report_hist,
    report_medians,
    report_refreshing,
    report_retention,
    report_visits,
)
from hub.store.engine import fetch_by_keys, writer

if TYPE_CHECKING:
    from hub.hookspecs import RecordBatch

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
        # the aggregate a refresh sums its integers with: on PostgreSQL ``rollup_sum`` (migration 0020), a BIGINT
        # added in a BIGINT; SUM keeps a 128-bit state apart per group and returns NUMERIC (the charges' regrouping
        # spilled to disk)
        self.total = "rollup_sum" if self.pg else "SUM"

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
            # a BIGINT (SUM's is a NUMERIC), as the regroupings that sum it again take (``total``)
            cents = "CAST(ROUND(CAST(j->>'amount' AS NUMERIC) * 100) AS BIGINT)"
            return (f"CAST((SELECT COALESCE(SUM({cents}), 0) FROM json_array_elements(CASE WHEN "
                    f"json_typeof({column}) = 'array' THEN {column} ELSE '[]'::json END) j WHERE j->>'group' = 'CO') "
                    f"AS BIGINT)")
        # a = the amount's text; s its sign, u its digits, d where its point is (or would be)
        fraction = "substr(u, d + 1) || '000'"
        cents = (f"s * (CAST(substr(u, 1, d - 1) AS INTEGER) * 100 + CAST(substr({fraction}, 1, 2) AS INTEGER) "
                 f"+ (substr({fraction}, 3, 1) >= '5'))")
        return (f"(SELECT COALESCE(SUM({cents}), 0) FROM (SELECT CASE WHEN a LIKE '-%' THEN -1 ELSE 1 END AS s, "
                f"ltrim(a, '-+') AS u, instr(ltrim(a, '-+') || '.', '.') AS d FROM (SELECT "
                f"trim(CAST(json_extract(j.value, '$.amount') AS TEXT)) AS a "
                f"FROM json_each(CASE WHEN json_type({column}) = 'array' THEN {column} ELSE '[]' END) j "
                f"WHERE json_extract(j.value, '$.group') = 'CO' AND json_extract(j.value, '$.amount') IS NOT NULL)))")


    MODIFIERS_PRICED = 4  # a claim line carries up to four modifiers (837P SV101-3 to -6)

    def rvu_joins(self, alias: str) -> str:
        """The LEFT JOINs that price a charge line ``alias`` by work RVU (``work_rvu_milli``; hub.reports.rvus):
        ``{alias}_ry`` the imported schedule in effect in its service year (the latest year on or before it;
        the years' ranges do not overlap), then its row in it: of the first of its (up to four) modifiers that
        has one, else of its code's base row. Each join matches at most one row: a line is never repeated.
        (PostgreSQL: one LATERAL look-up, ``{alias}_rv``; SQLite, which has no LATERAL but seeks by index in
        every join: ``{alias}_rm0..3`` by modifier, ``{alias}_rv`` the base row.)"""
        a = alias
        if self.pg:
            year = f"CAST(substr(CAST({a}.service_date AS VARCHAR), 1, 4) AS INTEGER)"
            modifier = f"(CASE WHEN json_typeof({a}.modifiers) = 'array' THEN upper({a}.modifiers ->> {{i}}) END)"
        else:
            year = f"CAST(substr({a}.service_date, 1, 4) AS INTEGER)"
            modifier = f"upper(json_extract({a}.modifiers, '$[{{i}}]'))"
        code = f"upper({a}.procedure_code)"
        # a window function keeps the few years' ranges one small table, made once per statement
        out = (f" LEFT JOIN (SELECT y.year AS since, LEAD(y.year) OVER (ORDER BY y.year) AS until FROM "
               f"(SELECT DISTINCT year FROM report_rvus) y) {a}_ry ON {year} >= {a}_ry.since AND "
               f"({a}_ry.until IS NULL OR {year} < {a}_ry.until)")
        mods = [modifier.format(i=i) for i in range(self.MODIFIERS_PRICED)]
        if self.pg:
            rank = " ".join(f"WHEN {m} THEN {i}" for i, m in enumerate(mods))
            return out + (f" LEFT JOIN LATERAL (SELECT v.work_milli FROM report_rvus v WHERE v.year = {a}_ry.since "
                          f"AND v.code = {code} AND (v.modifier = '' OR v.modifier IN ({', '.join(mods)})) "
                          f"ORDER BY CASE v.modifier {rank} ELSE {len(mods)} END LIMIT 1) {a}_rv ON TRUE")
        for i, m in enumerate(mods):
            out += (f" LEFT JOIN report_rvus {a}_rm{i} ON {a}_rm{i}.year = {a}_ry.since AND {a}_rm{i}.code = {code} "
                    f"AND {a}_rm{i}.modifier = {m}")
        return out + (f" LEFT JOIN report_rvus {a}_rv ON {a}_rv.year = {a}_ry.since AND {a}_rv.code = {code} AND "
                      f"{a}_rv.modifier = ''")

    def work_rvu_milli(self, alias: str) -> str:
        """Thousandths of a work RVU for one unit of the charge line ``alias`` (needs ``rvu_joins``): the row of
        its first modifier that has one, else its code's base row; NULL when no row prices it."""
        if self.pg:
            return f"{alias}_rv.work_milli"
        rows = [f"{alias}_rm{i}.work_milli" for i in range(self.MODIFIERS_PRICED)]
        return f"COALESCE({', '.join(rows)}, {alias}_rv.work_milli)"


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
    if dialect == "sqlite":
        return _sqlite_lookups()
    sql = Sql(dialect)
    return {
        # an appointment's own month, and its referral's: a linked appointment moves the funnel figures
        # and the months of the charges whose service line it may give (hub.reports.attribution): those naming
        # it as their visit, and those of its encounters
        "appointment": f"SELECT {sql.month('a.start')}, {sql.month('f.received_on')} FROM appointments a "
                       f"LEFT JOIN referrals f ON f.practice = a.practice AND f.source_id = a.referral_source_id "
                       f"WHERE a.practice = :p AND a.source_id IN :keys "
                       f"UNION SELECT {sql.month('c.service_date')}, NULL FROM charges c WHERE c.practice = :p AND "
                       f"c.encounter_source_id IN :keys UNION SELECT {sql.month('c.service_date')}, NULL FROM "
                       # the encounters first, by their appointment (as a join, SQLite's planner may read
                       # every charge of the practice instead)
                       f"charges c WHERE c.practice = :p AND c.encounter_source_id IN (SELECT e.source_id FROM "
                       f"encounters e WHERE e.practice = :p AND e.appointment_source_id IN :keys)",
        "encounter": f"SELECT {sql.month('start')} FROM encounters WHERE practice = :p AND source_id IN :keys "
                     f"UNION SELECT {sql.month('service_date')} FROM charges WHERE practice = :p AND "
                     f"encounter_source_id IN :keys",
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


def _sqlite_lookups() -> dict[str, str]:
    """SQLite's look-ups: the keys, one JSON array (``:keys``), walked by ``json_each`` and each probing the
    index (``CROSS JOIN`` keeps the keys the outer loop). The same statement text for any number of keys, so
    the driver prepares it once per connection; and no ``IN (SELECT value FROM json_each(:keys))``, which
    copies the keys into a temporary index first, once for each arm of a union (a third of the cost)."""
    sql = Sql("sqlite")
    keys = "json_each(:keys) CROSS JOIN"
    return {
        # as in ``_lookups``: the appointment's month and its referral's, the months of the charges naming it as
        # their visit, and of those of its encounters
        "appointment": f"SELECT {sql.month('a.start')}, {sql.month('f.received_on')} FROM {keys} appointments a "
                       f"LEFT JOIN referrals f ON f.practice = a.practice AND f.source_id = a.referral_source_id "
                       f"WHERE a.practice = :p AND a.source_id = json_each.value "
                       f"UNION SELECT {sql.month('c.service_date')}, NULL FROM {keys} charges c WHERE c.practice = :p "
                       f"AND c.encounter_source_id = json_each.value "
                       f"UNION SELECT {sql.month('c.service_date')}, NULL FROM {keys} encounters e CROSS JOIN "
                       f"charges c WHERE e.practice = :p AND e.appointment_source_id = json_each.value AND "
                       f"c.practice = :p AND c.encounter_source_id = e.source_id",
        "encounter": f"SELECT {sql.month('e.start')} FROM {keys} encounters e WHERE e.practice = :p AND "
                     f"e.source_id = json_each.value UNION SELECT {sql.month('c.service_date')} FROM {keys} charges c "
                     f"WHERE c.practice = :p AND c.encounter_source_id = json_each.value",
        "charge": f"SELECT DISTINCT {sql.month('c.service_date')} FROM {keys} charges c WHERE c.practice = :p AND "
                  f"c.source_id = json_each.value",
        "slot": f"SELECT DISTINCT {sql.month('s.start')} FROM {keys} slots s WHERE s.practice = :p AND "
                f"s.source_id = json_each.value",
        "referral": f"SELECT DISTINCT {sql.month('f.received_on')} FROM {keys} referrals f WHERE f.practice = :p AND "
                    f"f.source_id = json_each.value",
        "remittance": f"SELECT DISTINCT {sql.month('c.service_date')} FROM {keys} remittances r CROSS JOIN charges c "
                      f"WHERE r.practice = :p AND r.source_id = json_each.value AND c.practice = r.practice AND "
                      f"c.source_id = r.charge_source_id",
        "patient": f"SELECT {sql.month('a.start')} FROM {keys} appointments a WHERE a.practice = :p AND "
                   f"a.patient_source_id = json_each.value UNION SELECT {sql.month('e.start')} FROM {keys} "
                   f"encounters e WHERE e.practice = :p AND e.patient_source_id = json_each.value",
    }


def _query_cells(conn: sa.Connection, wanted: dict[tuple[str, str], set[str]]) -> set[Cell]:
    """Run the lookup named by each (lookup, practice) for its source ids; the months found, as cells."""
    statements = _lookups(conn.dialect.name)
    sqlite = conn.dialect.name == "sqlite"
    cells: set[Cell] = set()
    for (name, practice), ids in wanted.items():
        rows = (conn.exec_driver_sql(statements[name], {"p": practice, "keys": orjson.dumps(list(ids)).decode()})
                if sqlite else fetch_by_keys(conn, statements[name], ids, p=practice))
        months = {month for row in rows for month in row}
        cells.update(cell for month in months if month for cell in _month_cells(practice, name, month))
    return cells


_LOOKED_UP = frozenset({*_OWN_MONTH, "remittance", "patient"})  # kinds whose stored rows' cells are read
_BY_KIND = object()  # this module's key in RecordBatch.stash
_PRACTICE, _SOURCE_ID = itemgetter("practice"), itemgetter("source_id")


def records_by_kind(batch: RecordBatch) -> dict[str, list[dict[str, Any]]]:
    """The batch's records by kind, each kind's in the batch's order: made once a batch (kept in its stash) for
    the store hooks, which each read a few kinds (half a batch of HL7 v2 messages is providers, locations and
    coverages) and would otherwise each look at every record."""
    groups: dict[str, list[dict[str, Any]]] | None = batch.stash.get(_BY_KIND)
    if groups is None:
        groups = batch.stash[_BY_KIND] = _by_kind(batch.items)
    return groups


def _by_kind(items: Sequence[tuple[dict[str, Any], Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for record, _ in items:
        kind = record["kind"]
        try:
            groups[kind].append(record)
        except KeyError:
            groups[kind] = [record]
    return groups


def cells_of(conn: sa.Connection, items: Sequence[tuple[dict[str, Any], Any]]) -> set[Cell]:
    """The (practice, month) cells the stored rows of these records belong to, as the store holds them now."""
    return cells_of_kinds(conn, _by_kind(items))


def cells_of_kinds(conn: sa.Connection, groups: dict[str, list[dict[str, Any]]]) -> set[Cell]:
    """``cells_of`` the records grouped by kind (``records_by_kind``)."""
    wanted: dict[tuple[str, str], set[str]] = {}
    for kind, records in groups.items():
        if kind not in _LOOKED_UP:
            continue
        practices = set(map(_PRACTICE, records))
        if len(practices) == 1:  # as a batch mostly is: its ids taken out in C
            wanted.setdefault((kind, practices.pop()), set()).update(map(_SOURCE_ID, records))
            continue
        for record in records:
            wanted.setdefault((kind, record["practice"]), set()).add(record["source_id"])
    for record in groups.get("patient_merge", ()):
        wanted.setdefault(("patient", record["practice"]), set()).update((record["prior_source_id"],
                                                                         record["surviving_source_id"]))
    return _query_cells(conn, wanted)


# the kinds whose records name cells once written: (their own month's field, (the kind, field) they hang on)
_WRITTEN = {kind: (_OWN_MONTH.get(kind), _PARENT.get(kind)) for kind in (*_OWN_MONTH, *_PARENT)}
_YEAR_MONTH = attrgetter("year", "month")
_DATE_TYPES = frozenset({dt.date, dt.datetime})  # exactly these: their str() starts with the year and month
_DATES_OR_NONE = _DATE_TYPES | {type(None)}


def _month_text(year: int, month: int) -> str:
    """A date's or date-time's ``str()[:7]`` from its year and month, without formatting the whole value (and
    its offset: that was most of the cost of a batch's cells)."""
    return f"{year:04d}-{month:02d}"


def cells_written(conn: sa.Connection, items: Sequence[tuple[dict[str, Any], Any]]) -> set[Cell]:
    """The cells these records sit in once written, given the cells they sat in before.

    A record's own date names its month without a query: a NULL date keeps the stored
    one, and a record the store refused as older changes nothing, and both of those are
    among the cells before. What hangs on another row is read from that row by its id (a
    remittance's charge, an appointment's referral), unless that row is in the batch and so
    marked already. A patient or a merge moves no visit between months: its cells before
    are its cells after."""
    return cells_written_kinds(conn, _by_kind(items))


def cells_written_kinds(conn: sa.Connection, groups: dict[str, list[dict[str, Any]]]) -> set[Cell]:
    """``cells_written`` for the records grouped by kind (``records_by_kind``)."""
    cells: set[Cell] = set()
    parents: list[tuple[str, str, str]] = []  # (kind, practice, source id) of rows others hang on
    for kind, records in groups.items():
        if (written := _WRITTEN.get(kind)) is None:
            continue
        column, parent = written
        if column is not None:
            practices = set(map(_PRACTICE, records))
            values = list(map(dict.get, records, repeat(column)))
            if len(practices) == 1 and _DATES_OR_NONE.issuperset(map(type, values)):
                # as a batch mostly is: one practice, and dates (or none: a NULL keeps the stored one), whose
                # distinct months are found in C
                practice = practices.pop()
                for year, month in set(map(_YEAR_MONTH, filter(None, values))):
                    cells |= _month_cells(practice, kind, _month_text(year, month))
            else:
                for record, value in zip(records, values, strict=True):
                    if value:
                        month = (_month_text(value.year, value.month) if type(value) in _DATE_TYPES
                                 else str(value)[:7])
                        cells |= _month_cells(record["practice"], kind, month)
        if parent is not None:
            parent_kind, field = parent
            ids = list(map(dict.get, records, repeat(field)))
            if any(ids):
                parents.extend((parent_kind, record["practice"], parent_id)
                               for record, parent_id in zip(records, ids, strict=True) if parent_id)
    wanted: dict[tuple[str, str], set[str]] = defaultdict(set)
    if parents:
        in_batch = {(kind, record["practice"], record.get("source_id")) for kind in {kind for kind, _, _ in parents}
                    for record in groups.get(kind, ())}
        for kind, practice, parent_id in parents:
            if (kind, practice, parent_id) not in in_batch:
                wanted[(kind, practice)].add(parent_id)
    return cells | _query_cells(conn, wanted) if wanted else cells


@contextmanager
def tracking(conn: sa.Connection, items: Sequence[tuple[dict[str, Any], Any]]) -> Iterator[None]:
    """Mark dirty every cell the enclosed write moves records out of or into.

    Marking is cheap and happens in the batch's own transaction, so no change can be missed;
    recomputing the cells (``refresh_dirty``) is left to the background refresh
    (``hub.reports.background``) or the command that reads the figures. Recomputing inside every
    batch cost ingest three to six times its own time, and a backfill touches the same months
    over and over: deferred, each cell is recomputed once however many batches touched it."""
    before = cells_of(conn, items)
    yield
    mark_dirty(conn, before | cells_written(conn, items))


def stamp(moment: dt.datetime | None = None) -> str:
    """A UTC time as the rollups keep it: ISO 8601 text that sorts as time."""
    return (moment or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def mark_dirty(conn: sa.Connection, cells: set[Cell]) -> None:
    """Mark cells dirty; a cell marked already keeps its earlier time (the oldest change not reflected)."""
    if not cells:
        return
    placeholder = "?" if conn.dialect.name == "sqlite" else "%s"
    now = stamp()
    conn.exec_driver_sql(f"INSERT INTO {report_dirty.name} (practice, month, marked_at) VALUES ({placeholder}, "
                         f"{placeholder}, {placeholder}) ON CONFLICT DO NOTHING",
                         [(p, m, now) for p, m in sorted(cells)])


@dataclass(frozen=True)
class Freshness:
    """How current the committed rollups are, as a reader sees them.

    ``as_of`` (UTC, ``YYYY-MM-DDTHH:MM:SSZ``): every change stored before this time is in the
    figures. It is the time of the oldest change still waiting to be recomputed, or, when none
    waits, the moment of reading.
    ``pending_cells``: the (practice, month) cells waiting."""

    as_of: str
    pending_cells: int


def _waiting() -> sa.Subquery:
    """Every cell waiting: marked dirty, or taken by a catch-up that has not committed (a cell may be both)."""
    d, r = report_dirty.c, report_refreshing.c
    return sa.union_all(sa.select(d.practice, d.month, d.marked_at),
                        sa.select(r.practice, r.month, r.marked_at)).subquery()


def freshness(conn: sa.Connection) -> Freshness:
    """The freshness of the rollups, read in ``conn`` (one probe of the small ``report_dirty`` and
    ``report_refreshing`` tables).

    A cell whose refresh is running still counts as pending until that refresh commits."""
    read_at = stamp()  # before the probe, and the probe before the figures are read: never later than true
    w = _waiting()
    pending, oldest = conn.execute(sa.select(sa.func.count(sa.distinct(w.c.practice + w.c.month)),
                                             sa.func.min(w.c.marked_at))).one()
    # a mark from before times were kept (NULL) says nothing of when: the oldest known time stands
    as_of = min(oldest or read_at, read_at) if pending else read_at
    return Freshness(f"{as_of[:19]}Z", int(pending or 0))  # whole seconds, rounded down


def any_waiting(conn: sa.Connection) -> bool:
    """Whether any cell waits for a refresh (a probe of two small tables)."""
    return conn.execute(sa.select(_waiting().c.month).limit(1)).first() is not None


def dirty_cells(conn: sa.Connection) -> list[Cell]:
    """The cells waiting, in the order a refresh takes them: month by month, then practice.

    Month first: a visit's new-patient flag looks back at the patient's earlier visits, in any
    practice; built in that order, a catch-up after a backfill seldom changes a cell it has
    recomputed already (which would mean recomputing it again)."""
    d = report_dirty.c
    return [(p, m) for p, m in conn.execute(sa.select(d.practice, d.month).order_by(d.month, d.practice))]


REFRESH_LOCK = 7305532  # PostgreSQL advisory lock: one refresh transaction at a time, store-wide
# A refresh transaction takes several cells while they fit in about this long. The budget stays one of time, not
# of rows: what it bounds is how long the transaction holds its locks (an ingest marking one of its cells waits
# that long), and the cost of a row varies (a cell's visits re-read their patients' whole histories; a loaded
# machine runs everything slower), so a row count sized on one machine would hold the locks longer on another.
# Since every statement of a transaction covers all its cells at once (``_refresh_batch``), a transaction's fixed
# cost is paid once for all of them and the budget is spent on rows.
REFRESH_BUDGET_SECONDS = 1.0
_MOST_CELLS = 512  # and never more than this many (one claim statement, the months of a practice's queries)


def refresh_dirty(engine: sa.Engine, *, passes: int = 3, should_stop: Callable[[], bool] | None = None,
                  budget: float | None = None, on_commit: Callable[[int, float], None] | None = None) -> int:
    """Recompute the dirty cells, several cells a transaction; returns how many cells.

    On SQLite a transaction claims its cells (deletes their marks), recomputes their rollups (and those of
    any cell whose visit flags its visits changed) and commits, so no lock is held for longer
    than about ``budget`` seconds: an ingest that lands meanwhile waits at most that long, marks
    its cells again, and the next pass (or refresh) recomputes them; a report reads the cells
    committed so far. The first transaction takes one cell; each next one takes as many as the
    last one's seconds per cell say fit in ``budget`` (at most twice as many), so a catch-up
    after a backfill recomputes many cells, of all practices, with one set of statements, and a
    lone change still commits at once. Cells go month by month (``dirty_cells``), so a transaction
    holds the same months of several practices. One transaction recomputes at a time, whatever
    the number of processes refreshing (on SQLite by its write lock, on PostgreSQL by an
    advisory lock): two at once would both move the same retention counts. Cells marked while a
    pass runs are taken by the next; after ``passes`` passes the rest waits for the next refresh,
    so a refresh ends even while a backfill keeps marking. ``should_stop``: asked between
    transactions (a process shutting down). ``on_commit(cells, seconds)``: told of each commit.

    On PostgreSQL the cells are taken in a short transaction of their own and recomputed in a longer one
    (``_catch_up``), the first of them, when many cells wait, as large as the visits its cells hold allow:
    ``budget`` defaults to ``CATCH_UP_BUDGET_SECONDS`` there, to ``REFRESH_BUDGET_SECONDS`` on SQLite."""
    if engine.dialect.name == "postgresql":
        return _catch_up(engine, passes=passes, should_stop=should_stop,
                         budget=CATCH_UP_BUDGET_SECONDS if budget is None else budget, on_commit=on_commit)

    def waiting() -> list[Cell]:
        with engine.connect() as conn:
            return dirty_cells(conn)

    return _paced(waiting, lambda chunk: refresh_cells(engine, chunk), passes=passes, should_stop=should_stop,
                  budget=REFRESH_BUDGET_SECONDS if budget is None else budget, growth=2, most=lambda: _MOST_CELLS,
                  on_commit=on_commit)


def _paced(waiting: Callable[[], list[Cell]], recompute: Callable[[list[Cell]], int], *, passes: int,
           should_stop: Callable[[], bool] | None, budget: float, growth: int, most: Callable[[], int],
           on_commit: Callable[[int, float], None] | None,
           first: Callable[[list[Cell]], int] | None = None) -> int:
    """Recompute the ``waiting`` cells a transaction at a time (``recompute(chunk)``: the cells it took), one cell
    first (or ``first(cells)`` of the first pass's cells), then as many as fit in ``budget`` at the last
    transaction's pace (at most ``growth`` times as many as the last, and ``most()``), for ``passes`` passes over
    what waits; returns how many cells."""
    done, size = 0, 1
    for turn in range(max(1, passes)):
        cells = waiting()
        if not cells:
            break
        if turn == 0 and first is not None:
            size = max(1, first(cells))
        while cells:
            if should_stop is not None and should_stop():
                return done
            chunk, cells = cells[:size], cells[size:]
            started = time.perf_counter()
            taken = recompute(chunk)
            seconds = time.perf_counter() - started
            if on_commit is not None and taken:
                on_commit(taken, seconds)
            done += taken
            if taken:  # the next transaction: as many cells as fit in the budget at this one's pace
                size = max(1, min(growth * size, most(), int(budget * taken / max(seconds, 1e-6))))
    return done


# On PostgreSQL a refresh transaction holds no lock an ingest waits for (the marks it recomputes were moved out of
# report_dirty before it began; readers see the last commit), so it may run far longer than the budget above. The
# longer it is, the fewer times a patient's history is re-read: a catch-up after a backfill is mostly that work,
# repeated for each transaction holding one of the patient's months (a million appointments: 338 s in transactions
# of 30 s, 200-237 s in transactions of up to 300 s). What bounds a transaction is the memory of the visits it holds:
# at most about _CATCH_UP_VISITS, at the last transaction's visits per cell.
CATCH_UP_BUDGET_SECONDS = 300.0
_CATCH_UP_GROWTH = 8  # how much larger than the last a transaction may be
_CATCH_UP_VISITS = 1_000_000
# The first transaction's size is worked out from the visits its cells hold (``_first_cells``), at this pace (seconds
# a visit; a catch-up of a million appointments took 61 microseconds a visit): a first transaction of one cell, and
# growing from there, re-read the first cells' patients in every later transaction (a million appointments: 55.6 s
# in transactions of 1, 8, 64 and 287 cells, 47.6 s in one of all 360).
_FIRST_PACE = 1e-4
_SIZED_FIRST = 32  # a catch-up of at least so many cells (after a backfill, an import) sizes its first transaction
_CATCH_UP_WORK_MEM = "256MB"  # per sort or hash of a catch-up statement (PostgreSQL's work_mem)


def _catch_up(engine: sa.Engine, *, passes: int, should_stop: Callable[[], bool] | None,
              budget: float, on_commit: Callable[[int, float], None] | None) -> int:
    """``refresh_dirty`` on PostgreSQL: one refresh at a time store-wide (a session advisory lock, held across its
    transactions); each transaction's cells are first moved from ``report_dirty`` to ``report_refreshing`` and
    committed, then recomputed and deleted from there in one transaction. The first transaction takes one cell, or,
    when ``_SIZED_FIRST`` cells or more wait, as many as hold ``_CATCH_UP_VISITS`` visits and fit in ``budget`` at
    ``_FIRST_PACE`` (``_first_cells``); each next one as many as fit in ``budget`` at the last one's pace (at most
    ``_CATCH_UP_GROWTH`` times as many as the last)."""
    with engine.connect() as conn:
        conn.execute(sa.text(f"SELECT pg_advisory_lock({REFRESH_LOCK})"))
        conn.commit()

        def waiting() -> list[Cell]:
            with conn.begin():
                return dirty_cells(conn)

        visits_per_cell = 0.0

        def first(cells: list[Cell]) -> int:
            if len(cells) < _SIZED_FIRST:  # a few cells: one first, committed at once
                return 1
            with conn.begin():
                return _first_cells(conn, cells, min(_CATCH_UP_VISITS, budget / _FIRST_PACE))

        def recompute(chunk: list[Cell]) -> int:
            nonlocal visits_per_cell
            with conn.begin():
                taken = _take(conn, chunk)
            if taken:
                with conn.begin(), gc_paused():  # the visits' millions of tuples: no collector passes over them
                    _catch_up_settings(conn)
                    visits_per_cell = refresh(conn, taken, overlap=True) / len(taken)
                    if len(taken) >= _WHOLE_BATCH_CELLS:
                        _count_coarse(conn)
                    r = report_refreshing.c
                    conn.execute(sa.delete(report_refreshing).where(sa.tuple_(r.practice, r.month).in_(sorted(taken))))
            return len(taken)

        try:
            with conn.begin():
                _take_back(conn)  # cells a catch-up that died left taken: they wait again, first in line
            return _paced(waiting, recompute, passes=passes, should_stop=should_stop, budget=budget,
                          growth=_CATCH_UP_GROWTH, on_commit=on_commit, first=first,
                          most=lambda: max(1, int(_CATCH_UP_VISITS / visits_per_cell)) if visits_per_cell
                          else sys.maxsize)
        finally:
            try:
                if conn.in_transaction():
                    conn.rollback()
                with conn.begin():
                    _take_back(conn)  # a recompute that failed: its cells wait again
                conn.execute(sa.text(f"SELECT pg_advisory_unlock({REFRESH_LOCK})"))
                conn.commit()
            except sa.exc.DBAPIError:  # the session is gone, and its lock with it: the next refresh takes them back
                conn.invalidate()


def _first_cells(conn: sa.Connection, cells: list[Cell], visits: float) -> int:
    """How many of ``cells`` (in order) a first transaction takes: as many as hold at most ``visits`` visits
    together, and one at the least."""
    held = visit_rollup.count_visits(conn, set(cells))
    total = 0
    for taken, cell in enumerate(cells):
        total += held[cell]
        if total > visits:
            return max(1, taken)
    return len(cells)


def _catch_up_settings(conn: sa.Connection) -> None:
    """The settings of a catch-up transaction's sessions (PostgreSQL), for the transaction."""
    # the JIT compiler spent longer on these statements' wide expressions (the measures, the service-line
    # attribution) than it saved: 2.9 s of a 3.7 s statement
    conn.execute(sa.text("SET LOCAL jit = off"))
    # the fine rollups regroup some hundred thousand wide rows per statement: in the default 4 MB PostgreSQL sorted
    # them on disk (an external merge of 57 MB for 120 cells at 200,000 appointments); in memory they are grouped by
    # hash. One catch-up at a time uses it, on its three sessions (``_refresh_overlapped``).
    conn.execute(sa.text(f"SET LOCAL work_mem = '{_CATCH_UP_WORK_MEM}'"))
    # its sessions and this process's Python already share the machine's cores: a parallel plan's workers only add
    # the passing of rows between them
    conn.execute(sa.text("SET LOCAL max_parallel_workers_per_gather = 0"))


def _count_coarse(conn: sa.Connection) -> None:
    """Have the planner count the rollups the reports read (``ANALYZE``: it sees this transaction's rows, and its
    counts are committed with them). After a large catch-up the reports that follow planned with the counts of
    before: the first by site and week over a million appointments took 1.15 s, 0.40 s after this (which took
    0.3 s); by site and month 0.19 s, 0.15 s after. Autovacuum counts them too, but only a minute or more later."""
    tables = (report_cells, report_hist, report_credits, report_medians, report_retention)
    conn.execute(sa.text(f"ANALYZE {', '.join(t.name for t in tables)}"))


def _take(conn: sa.Connection, cells: Sequence[Cell]) -> set[Cell]:
    """Move these cells' marks from ``report_dirty`` to ``report_refreshing``; the cells moved."""
    d = report_dirty.c
    rows = conn.execute(sa.delete(report_dirty).where(sa.tuple_(d.practice, d.month).in_(list(cells)))
                        .returning(d.practice, d.month, d.marked_at)).all()
    if rows:
        conn.execute(sa.insert(report_refreshing), [{"practice": p, "month": m, "marked_at": at} for p, m, at in rows])
    return {(p, m) for p, m, _ in rows}


def _take_back(conn: sa.Connection) -> None:
    """Cells left in ``report_refreshing`` (by a catch-up that failed or died) wait in ``report_dirty`` again, with
    the older of the two marks when one was made meanwhile."""
    r, d = report_refreshing.c, report_dirty.c
    rows = conn.execute(sa.delete(report_refreshing).returning(r.practice, r.month, r.marked_at)).all()
    if not rows:
        return
    from sqlalchemy.dialects import postgresql

    insert = postgresql.insert(report_dirty)
    conn.execute(insert.on_conflict_do_update(index_elements=[d.practice, d.month], set_={
        "marked_at": sa.func.least(d.marked_at, insert.excluded.marked_at)}),
        [{"practice": p, "month": m, "marked_at": at} for p, m, at in rows])


def refresh_cells(engine: sa.Engine, cells: Sequence[Cell]) -> int:
    """Recompute these dirty cells in one transaction; returns how many it claimed (another refresh may
    have taken some first)."""
    with writer(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({REFRESH_LOCK})"))
        d = report_dirty.c
        claimed = {(p, m) for p, m in conn.execute(sa.delete(report_dirty).where(
            sa.tuple_(d.practice, d.month).in_(list(cells))).returning(d.practice, d.month))}
        if claimed:
            refresh(conn, claimed)
    return len(claimed)


def refresh_cell(engine: sa.Engine, cell: Cell) -> int:
    """Recompute one dirty cell in its own transaction; 0 when another refresh took it first."""
    return refresh_cells(engine, [cell])


# ------------------------------------------------------------------ recomputing cells
def refresh(conn: sa.Connection, cells: set[Cell], *, overlap: bool = False) -> int:
    """Recompute the rollups of these (practice, month) cells from the base tables: their visits, then every
    rollup of them (and of the cells whose visit flags changed) with one statement each for all the cells.
    Returns how many visits the cells hold (what a refresh holds in memory grows with them).

    ``overlap`` (PostgreSQL; the caller's transaction has written no visits): the first chunk's visits are read on a
    second session while the server computes the other rollups (``_refresh_overlapped``). A later chunk reads them
    in the transaction, which sees the visits the first wrote."""
    sql = Sql(conn.dialect.name)
    if conn.dialect.name == "postgresql":  # whoever calls (a refresh, a rebuild, a cost import): one at a time
        conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({REFRESH_LOCK})"))
    # at most _MOST_CELLS at a time, as a refresh transaction takes: the keys each statement binds (SQLite allows
    # some thousands) and the patients held in memory stay those of a transaction's cells
    ordered = sorted(cells, key=lambda cell: (cell[1], cell[0]))  # month by month, as dirty_cells
    visits = 0
    for i in range(0, len(ordered), _MOST_CELLS):
        chunk = set(ordered[i:i + _MOST_CELLS])
        if overlap and sql.pg and i == 0:
            visits += _refresh_overlapped(conn, sql, chunk)
            continue
        rebuilt = visit_rollup.rebuild(conn, chunk)
        visits += rebuilt.held
        _refresh_batch(conn, sql, chunk | rebuilt.changed, meanwhile=rebuilt.retention)
    return visits


def _months_by_practice(cells: set[Cell]) -> dict[str, list[str]]:
    by_practice: dict[str, list[str]] = defaultdict(list)
    for practice, month in cells:
        by_practice[practice].append(month)
    return by_practice


def _params(practice: str, months: list[str]) -> dict[str, Any]:
    lo, hi = months[0], _month_shift(months[-1], 1)
    return {"p": practice, "months": months, "lo": lo, "hi": hi, "dlo": f"{lo}-01", "dhi": f"{hi}-01"}


def _batch_params(cells: set[Cell]) -> dict[str, Any]:
    """The parameters of the batch statements (``batch=True``): ``:practices`` and ``:months`` bound the index
    range, ``:cells`` (each ``practice || month``: the month is seven characters, so a key names one cell) picks
    exactly the cells, whatever months each practice has in the batch."""
    months = sorted({m for _, m in cells})
    lo, hi = months[0], _month_shift(months[-1], 1)
    return {"practices": sorted({p for p, _ in cells}), "months": months, "cells": sorted(p + m for p, m in cells),
            "lo": lo, "hi": hi, "dlo": f"{lo}-01", "dhi": f"{hi}-01"}


def _practice_is(column: str, batch: bool) -> str:
    """The practice part of a statement's cells: one practice (``:p``), or the batch's (``:practices``)."""
    return f"{column} IN :practices" if batch else f"{column} = :p"


def _month_in(practice: str, month: str, batch: bool) -> str:
    """The month part: one practice's months, or the batch's cells exactly (``_batch_params``)."""
    return f"{month} IN :months AND {practice} || {month} IN :cells" if batch else f"{month} IN :months"


def _cells_in(alias: str) -> str:
    """A rollup table's rows of the batch's cells (its ``practice`` and ``month`` columns): the practices and the
    range of months are the index's conditions (with ``month IN`` beside ``practice IN``, PostgreSQL scanned the
    index by practice only and filtered out every other month of those practices), the keys pick the cells
    exactly."""
    return (f"{alias}practice IN :practices AND {alias}month >= :lo AND {alias}month < :hi AND "
            f"{alias}practice || {alias}month IN :cells")


_EXPANDING = ("months", "practices", "cells", "weeks")


def _text(sql: str) -> sa.TextClause:
    return sa.text(sql).bindparams(*(sa.bindparam(name, expanding=True) for name in _EXPANDING
                                     if f":{name}" in sql))


def _select(dims: dict[str, str], month: str, week: str, sums: dict[str, str], source: str,
            measures: Sequence[str] = MEASURES) -> str:
    dim_sql = ", ".join(f"{expr} AS {name}" for name, expr in dims.items())
    meas = ", ".join(f"{sums.get(m, '0')} AS {m}" for m in measures)
    groups = ", ".join(_grouping([*dims.values(), month, week]))
    return f"SELECT {dim_sql}, {month} AS month, {week} AS week, {meas} FROM {source} GROUP BY {groups}"


def _grouping(exprs: list[str]) -> list[str]:
    return [e for e in exprs if not e.startswith("'")]  # PostgreSQL refuses constants in GROUP BY


# the NPI columns of the tables by their alias here: the provider key's first choice (hub.reports.providers)
_NPI_COLUMNS = {"a": ("provider_npi",), "c": ("rendering_npi",)}


def _dims(alias: str, *, location: bool = True, provider: bool = True, fc: bool = False) -> dict[str, str]:
    return {
        "practice": f"{alias}.practice",
        "location": f"COALESCE({alias}.location_source_id, '')" if location else "''",
        # providers across practices by NPI (hub.reports.providers), not by each practice's own id
        "provider": provider_key(alias, _NPI_COLUMNS.get(alias, ())) if provider else "''",
        "service_line": f"COALESCE({alias}.service_line, '')",
        "financial_class": f"COALESCE({alias}.financial_class, '')" if fc else "''",
    }


@dataclass(frozen=True)
class Measure:
    """One additive measure of a source: the sum of ``value`` over the source's rows where ``when`` holds.

    The rollups sum it per cell; a drill-down (``hub.reports.drill``) lists the rows it selects, so
    the two read one definition."""

    value: str = "1"
    when: str | None = None

    def sum_sql(self, total: str = "SUM") -> str:
        """The SQL of the measure's sum, with the aggregate ``total`` (``Sql.total`` where the rows are written)."""
        # a cell whose rows all lack the value (unpriced charge lines only) sums to 0, never NULL
        if self.when is None:
            return "COUNT(*)" if self.value == "1" else f"COALESCE({total}({self.value}), 0)"
        return f"COALESCE({total}(CASE WHEN {self.when} THEN {self.value} ELSE 0 END), 0)"


@dataclass(frozen=True)
class Source:
    """The rows one group of measures is summed over: ``table`` (with its alias) filtered by ``where``
    (parameters ``:p``, ``:months``, ``:lo``/``:hi``, ``:dlo``/``:dhi``: ``_params``), with the dimension,
    month and week each row falls in. ``kind`` and ``source_id`` name the record a row is (SQL; ``kind``
    None: the rows are no records, imported costs)."""

    name: str
    table: str
    where: str | None
    dims: dict[str, str]
    month: str
    week: str
    measures: dict[str, Measure]
    kind: str | None = None
    source_id: str | None = None

    def select_sql(self, *, own: bool = False, total: str = "SUM") -> str:
        """SELECT the dimensions, ``month``, ``week`` and every measure of ``MEASURES`` (0 where not this
        source's), grouped; ``own``: only this source's measures (``own_measures``); ``total``: as ``sum_sql``."""
        sums = {m: e.sum_sql(total) for m, e in self.measures.items()}
        return _select(self.dims, self.month, self.week, sums,
                       f"{self.table} WHERE {self.where}" if self.where else self.table,
                       measures=self.own_measures() if own else MEASURES)

    def own_measures(self) -> tuple[str, ...]:
        return tuple(m for m in MEASURES if m in self.measures)


STAGED_CHARGES = "report_staged_charges"  # a refresh's charges with their keys (``staged_sql``)
STAGED_APPOINTMENTS = "report_staged_appointments"  # and its appointments


def measure_sources(sql: Sql, batch: bool = False, *, staged: bool = False) -> list[Source]:
    """Every measure of ``MEASURES`` by the rows it is summed over (each measure in one source); ``batch``:
    the rows of a batch's cells across practices (``_batch_params``), else of one practice's months.
    ``staged``: the charges and remittances read the batch's charges from ``STAGED_CHARGES``, the appointments
    from ``STAGED_APPOINTMENTS`` (made by ``staged_sql``), whose keys are computed once for all their figures
    (the charges, remittances and credits; the appointments and their lead times)."""
    in_range = "{practice} AND {a}.{col} >= {lo} AND {a}.{col} < {hi} AND {months}"

    def where(a: str, col: str, dated: bool = False) -> str:
        lo, hi = (sql.date_param("dlo"), sql.date_param("dhi")) if dated else (":lo", ":hi")
        return in_range.format(a=a, col=col, lo=lo, hi=hi, practice=_practice_is(f"{a}.practice", batch),
                               months=_month_in(f"{a}.practice", sql.month(f"{a}.{col}"), batch))

    cosmetic_consult = "v.service_line = 'cosmetic_aesthetics' AND v.visit_category = 'consult'"
    visits = Source("visits", "report_visits v",
                    _cells_in("v.") if batch else "v.practice = :p AND v.month IN :months",
                    {"practice": "v.practice", "location": "v.location", "provider": "v.provider",
                     "service_line": "v.service_line", "financial_class": "''"}, "v.month", sql.week("v.visit_date"), {
        "visits": Measure(),
        "new_visits": Measure(when="v.is_new"),
        "consults_cosmetic": Measure(when=cosmetic_consult),
        "consults_cosmetic_converted": Measure(when=f"{cosmetic_consult} AND v.converted"),
    }, "v.kind", "v.source_id")
    appts_where: str | None
    appts_from, appts_where, appts_dims, appts_month, appts_week = (
        "appointments a", where("a", "start"), _dims("a"), sql.month("a.start"), sql.week("a.start"))
    if staged:
        appts_from, appts_where, appts_dims, appts_month, appts_week = (
            f"{STAGED_APPOINTMENTS} a", None, {d: f"a.{d}" for d in DIMS}, "a.month", "a.week")
    appts = Source("appointments", appts_from, appts_where, appts_dims, appts_month, appts_week, {
        "appts_scheduled": Measure(when=f"a.status IN ({_q(SCHEDULED)})"),
        "appts_noshow": Measure(when="a.status = 'noshow'"),
        "appts_cancelled": Measure(when="a.status = 'cancelled'"),
        "appts_late_cancelled": Measure(when="a.status = 'cancelled' AND a.cancelled_at IS NOT NULL AND "
                                             f"{sql.within_hours('a.start', 'a.cancelled_at', 24)}"),
        # booked minutes count only where capacity is published (a site with slots): a site without
        # slots has no utilization, and must not inflate the MSO total's numerator either
        "booked_minutes": Measure("COALESCE(a.duration_min, 0)", f"a.status IN ({_q(OCCUPYING)}) AND EXISTS "
                                  "(SELECT 1 FROM slots s2 WHERE s2.practice = a.practice)"),
    }, "'appointment'", "a.source_id")
    slots = Source("slots", "slots s", f"{where('s', 'start')} AND s.status IN ({_q(AVAILABLE_SLOTS)})",
                   _dims("s"), sql.month("s.start"), sql.week("s.start"), {
        "available_minutes": Measure("COALESCE(s.duration_min, 0)"),
    }, "'slot'", "s.source_id")
    mix = {f"charges_{fc}_cents": Measure("c.amount", f"c.financial_class = '{fc}'") for fc in FINANCIAL_CLASS}
    mix["charges_unknown_cents"] = Measure("c.amount", f"c.financial_class IS NULL OR c.financial_class NOT IN "
                                                       f"({_q(FINANCIAL_CLASS)})")
    # a charge's service line: its own, else its encounter's or appointment's, else its procedure code's
    # (hub.reports.attribution); remittances and credits count under their charge's
    charge_dims = {**_dims("c", fc=True), "service_line": charge_service_line("c")}
    charge_month, charge_week, work_milli = sql.month("c.service_date"), sql.week("c.service_date"), \
        sql.work_rvu_milli("c")
    charges_from = f"charges c{charge_joins('c')}{sql.rvu_joins('c')}"  # priced by work RVU too
    charged_where: str | None = where("c", "service_date", dated=True)
    remits_from = f"charges c JOIN remittances r ON r.practice = c.practice AND r.charge_source_id = c.source_id" \
                  f"{charge_joins('c')}"
    if staged:
        charge_dims = {d: f"c.{d}" for d in DIMS}
        charge_month, charge_week, work_milli, charged_where = "c.month", "c.week", "c.work_milli", None
        charges_from = f"{STAGED_CHARGES} c"
        remits_from = f"{STAGED_CHARGES} c JOIN remittances r ON r.practice = c.practice AND " \
                      "r.charge_source_id = c.source_id"
    charges = Source("charges", charges_from, charged_where, charge_dims, charge_month, charge_week, {
        "charge_lines": Measure(),
        "charges_cents": Measure("COALESCE(c.amount, 0)"),
        "charges_posted": Measure(when="c.posted_on IS NOT NULL"),
        "charge_lag_days": Measure(sql.days("c.posted_on", "c.service_date"), "c.posted_on IS NOT NULL"),
        # a line no RVU row prices counts no work RVUs, and is not among rvu_lines (hub.reports.rvus)
        "work_rvu_milli": Measure(f"COALESCE(c.units, 1) * {work_milli}", f"{work_milli} IS NOT NULL"),
        "rvu_lines": Measure(when=f"{work_milli} IS NOT NULL"),
        **mix,
    }, "'charge'", "c.source_id")
    remits = Source("remittances", remits_from, charged_where, charge_dims, charge_month, charge_week, {
        "payments_cents": Measure("COALESCE(r.paid_amount, 0)"),
        "adjustments_cents": Measure("COALESCE(r.adjustment_amount, 0)"),
        "contractual_cents": Measure(sql.contractual_cents("r.adjustments")),
        "remit_lines": Measure(),
        "denied_lines": Measure(when="r.denied"),
        "adjudicated_cents": Measure("COALESCE(c.amount, 0)"),
        "denied_cents": Measure("COALESCE(c.amount, 0)", "r.denied"),
    }, "'remittance'", "r.source_id")
    referrals = Source("referrals", f"({_referrals_sql(sql, batch)}) f", None,
                       _dims("f", location=False, provider=False), sql.month("f.received_on"),
                       sql.week("f.received_on"), {
        "referrals_received": Measure(),
        "referrals_scheduled": Measure(when="f.first_scheduled IS NOT NULL"),
        "referrals_attended": Measure(when="f.first_attended IS NOT NULL"),
    }, "'referral'", "f.source_id")
    costs = Source("costs", "report_costs k", _cells_in("k.") if batch else "k.practice = :p AND k.month IN :months",
                   {"practice": "k.practice", "location": "''", "provider": "''",
                    "service_line": "k.service_line", "financial_class": "''"}, "k.month", "''", {
        "costs_cents": Measure("k.cost_cents"), "cost_cells": Measure(),
    })
    return [visits, appts, slots, charges, remits, referrals, costs]


def _referrals_sql(sql: Sql, batch: bool = False) -> str:
    month = sql.month("f.received_on")
    first = ("(SELECT MIN(substr(a.start, 1, 10)) FROM appointments a WHERE a.practice = f.practice AND "
             "a.referral_source_id = f.source_id AND a.status IN ({}))")
    return (f"SELECT f.practice, f.source_id, f.patient_source_id, f.service_line, f.received_on, "
            f"{first.format(_q(SCHEDULED))} AS first_scheduled, "
            f"{first.format(_q(visit_rollup.COMPLETED))} AS first_attended FROM referrals f "
            f"WHERE {_practice_is('f.practice', batch)} AND f.received_on >= {sql.date_param('dlo')} AND "
            f"f.received_on < {sql.date_param('dhi')} AND {_month_in('f.practice', month, batch)}")


def _hist_sources(sql: Sql, batch: bool = False, *, staged: bool = False) -> list[tuple[str, str]]:
    """(metric, SELECT of its histogram rows); ``batch`` as ``measure_sources``; ``staged``: the appointments
    read from ``STAGED_APPOINTMENTS``."""
    lead = sql.days("a.start", "a.booked_at")
    dims, month, week = _dims("a"), sql.month("a.start"), sql.week("a.start")
    rows = (f"appointments a WHERE {_practice_is('a.practice', batch)} AND a.start >= :lo AND a.start < :hi AND "
            f"{_month_in('a.practice', month, batch)} AND ")
    count, grouped = "COUNT(*)", f" GROUP BY {', '.join(_grouping([*dims.values(), month, week, lead]))}"
    if staged:
        dims, month, week, rows = {d: f"a.{d}" for d in DIMS}, "a.month", "a.week", f"{STAGED_APPOINTMENTS} a WHERE "
        # a row per appointment, not grouped: at the fine grain a lead time's key (the cell's keys, its week and the
        # days) is about one appointment's anyway (785,000 groups of 795,000 appointments), and the readers sum ``n``
        # as they sum the rows of every grain; the grouping was a quarter of the statement's time
        count, grouped = "1", ""
    appts = (f"SELECT {', '.join(f'{e} AS {n}' for n, e in dims.items())}, {month} AS month, "
             f"{week} AS week, 'lead_days' AS metric, {lead} AS value, {count} AS n FROM {rows}"
             f"a.status IN ({_q(SCHEDULED)}) AND a.booked_at IS NOT NULL AND a.booked_at <= a.start{grouped}")
    out = [("lead_days", appts)]
    month, week = sql.month("f.received_on"), sql.week("f.received_on")
    for metric, column in (("referral_to_scheduled_days", "first_scheduled"),
                           ("referral_to_attended_days", "first_attended")):
        days = sql.days(f"f.{column}", "f.received_on")
        dims = _dims("f", location=False, provider=False)
        out.append((metric, f"SELECT {', '.join(f'{e} AS {n}' for n, e in dims.items())}, "
                            f"{month} AS month, {week} AS week, '{metric}' AS metric, {days} AS value, "
                            f"COUNT(*) AS n FROM ({_referrals_sql(sql, batch)}) f WHERE f.{column} IS NOT NULL "
                            f"GROUP BY {', '.join(_grouping([*dims.values(), month, week, days]))}"))
    return out


def staged_sql(sql: Sql) -> dict[str, str]:
    """CREATE the temporary tables ``STAGED_CHARGES`` and ``STAGED_APPOINTMENTS``, by name: the batch's charges and
    appointments (``_batch_params``) with the keys their figures are kept by (each dimension, ``month``, ``week``)
    and the columns the measures read, each key computed once (a row's provider and a charge's service line are
    looked up per row); the charges with their work RVU price (``work_milli``). The measures read a charge's
    ``financial_class`` key, '' where the charge has none: as NULL, it is no class of the mix either. (On
    PostgreSQL, unlike an INSERT's, a CREATE TABLE AS's query may run in parallel.)"""
    sources = {s.name: s for s in measure_sources(sql, batch=True)}
    out = {}
    for table, name, extra, raw in (
            (STAGED_CHARGES, "charges", f"{sql.work_rvu_milli('c')} AS work_milli",
             ("source_id", "amount", "units", "posted_on", "service_date")),
            (STAGED_APPOINTMENTS, "appointments", None,
             ("status", "start", "cancelled_at", "booked_at", "duration_min"))):
        source = sources[name]
        alias = source.table.split()[1]
        columns = [*(f"{expr} AS {key}" for key, expr in source.dims.items()), f"{source.month} AS month",
                   f"{source.week} AS week", *([extra] if extra else []), *(f"{alias}.{c}" for c in raw)]
        out[table] = (f"CREATE TEMPORARY TABLE {table} AS SELECT {', '.join(columns)} FROM {source.table} "
                      f"WHERE {source.where}")
    return out


def _charges_and_remittances_sql(sources: dict[str, Source], total: str = "SUM") -> tuple[str, tuple[str, ...]]:
    """The fine rows of the staged charges (``measure_sources(..., staged=True)``'s ``charges``) with their
    remittances' figures in the same rows, and the measures it gives. Each charge's remittance lines are summed
    first (one row per charge at most), so the charge's own figures are not repeated for each line: the
    remittances' measures are sums over their lines (``remittances``), but for the charge's amount, counted once
    per line adjudicated (``adjudicated_cents``) and per line denied (``denied_cents``). A charge and its
    remittances share their keys: one row and one regrouping for both, where each source's own were about as
    many rows as records."""
    charges, remits = sources["charges"], sources["remittances"]
    by_line = ("payments_cents", "adjustments_cents", "contractual_cents", "remit_lines", "denied_lines")
    amount_per = {"adjudicated_cents": "remit_lines", "denied_cents": "denied_lines"}
    if set(remits.measures) != {*by_line, *amount_per}:  # a new remittance measure must be placed here too
        raise RuntimeError(f"remittance measures not all combined: {sorted(remits.measures)}")
    per_charge = ", ".join(f"{remits.measures[m].sum_sql(total)} AS {m}" for m in by_line)
    paid = (f"SELECT c.practice, c.source_id, {per_charge} FROM {remits.table} "
            f"GROUP BY c.practice, c.source_id")
    sums = {m: e.sum_sql(total) for m, e in charges.measures.items()}
    sums.update({m: f"{total}(p.{m})" for m in by_line})  # NULL where no charge of the row was paid: no figure
    sums.update({m: f"{total}(COALESCE(c.amount, 0) * p.{lines})" for m, lines in amount_per.items()})
    measures = tuple(m for m in MEASURES if m in sums)
    return _select(charges.dims, charges.month, charges.week, sums,
                   f"{charges.table} LEFT JOIN ({paid}) p ON p.practice = c.practice AND p.source_id = c.source_id",
                   measures=measures), measures


_FINE_CREDITS = f"{report_fine_credits.name} ({', '.join(DIMS)}, month, week, paid_month, paid_week, credits_cents)"


def _credits_sql(sql: Sql) -> str:
    """SELECT the batch's fine credits (the columns of ``_FINE_CREDITS``), from ``STAGED_CHARGES``."""
    paid_on = "COALESCE(r.paid_on, c.service_date)"
    keys = [*(f"c.{d}" for d in DIMS), "c.month", "c.week", sql.month(paid_on), sql.week(paid_on)]
    return (f"SELECT {', '.join(keys)}, "
            f"{sql.total}(COALESCE(r.paid_amount, 0) + COALESCE(r.adjustment_amount, 0)) FROM {STAGED_CHARGES} c "
            f"JOIN remittances r ON r.practice = c.practice AND r.charge_source_id = c.source_id "
            f"GROUP BY {', '.join(keys)}")


def _charges_aside(engine: sa.Engine, sql: Sql, cells: set[Cell]) -> list[tuple[str, list[bytes]]]:
    """The fine rows of the charges with their remittances', and the fine credits, of ``cells``, worked out on a
    session of its own (PostgreSQL): (the table and columns they go to, their rows as binary ``COPY`` blocks) for
    the refresh's session to take in by ``COPY`` (``_take_in``). The session reads the committed rows, as the
    visits' reading does: a charge an ingest commits meanwhile marks its cell again. The staging and the
    regroupings, some third of a large catch-up's statements, then run on the machine's other core beside the
    refresh's session, which only writes their rows; the rows pass through as the server wrote them, never parsed
    here. (Binary: each column's type is the target column's, BIGINT sums and text keys; a column of another type
    would fail the ``COPY``, not pass.)"""
    sources = {source.name: source for source in measure_sources(sql, batch=True, staged=True)}
    charges, own = _charges_and_remittances_sql(sources, sql.total)
    out = []
    with engine.connect() as side:  # its temporary table goes with the transaction it rolls back
        _catch_up_settings(side)
        side.execute(_text(staged_sql(sql)[STAGED_CHARGES]), _batch_params(cells))
        side.execute(sa.text(f"ANALYZE {STAGED_CHARGES} (practice, source_id)"))
        cursor = side.connection.driver_connection.cursor()  # type: ignore[union-attr]
        for target, select in ((f"{report_fine_cells.name} ({', '.join(DIMS)}, month, week, {', '.join(own)})",
                                charges), (_FINE_CREDITS, _credits_sql(sql))):
            with cursor.copy(f"COPY ({select}) TO STDOUT (FORMAT binary)") as copy:
                out.append((target, [bytes(block) for block in copy]))
    return out


def _take_in(conn: sa.Connection, rows: list[tuple[str, list[bytes]]]) -> None:
    """``COPY`` in the rows ``_charges_aside`` worked out."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    for target, blocks in rows:
        with cursor.copy(f"COPY {target} FROM STDIN (FORMAT binary)") as copy:
            for block in blocks:
                copy.write(block)


def _refresh_batch(conn: sa.Connection, sql: Sql, cells: set[Cell], *, meanwhile: Callable[[], None] | None = None
                   ) -> None:
    """Recompute the rollups of ``cells`` (of any practices) with one statement per source and rollup for all of
    them: a statement's cost at this size is mostly its planning and round trip, not its rows. Each source adds
    its own fine rows (``report_fine_cells``: its measures only, no regrouping into one row per key). ``meanwhile``:
    work of the same transaction that reads none of these rollups, run once the statements are sent (on
    PostgreSQL the server computes them meanwhile, on the machine's other core)."""
    third_available = _third_available_rows(conn, cells)
    with round_trip(conn):  # nothing here is read back; the server still runs the statements in order
        _fine_rows(conn, sql, cells, third_available)
        _coarse_grains(conn, sql, cells)
        if meanwhile is not None:
            meanwhile()
    refresh_summaries(conn, cells)


def _refresh_overlapped(conn: sa.Connection, sql: Sql, cells: set[Cell]) -> int:
    """``refresh`` of one chunk on PostgreSQL, on three sessions at once: the statements of the appointments, slots
    and referrals are sent on the transaction's own; meanwhile, on threads, the charges' and credits' fine rows are
    worked out on a second session (``_charges_aside``), and the visits and their patients' histories read on a
    third and their flags worked out (``_read_visits``), both from committed rows, and the retention counts worked
    out on a thread as soon as the visits are read. The transaction's session sums its cells' coarse histograms
    (their fine rows all written by then) while it waits; then the charges' rows are taken in and the visits
    written, whichever is ready first first; the visits' fine rows added, the cells whose visit flags changed
    recomputed, the other coarse grains summed and the retention counts written. Returns the visits held.

    A catch-up's CPU is some 60 % the server's and 40 % this process's (the visits' flags, the retention counts): on
    one session the server's part alone was the catch-up's time, one core's worth; on three, with this process's
    Python beside them, the machine's cores share it."""
    third_available = _third_available_rows(conn, cells)
    with ThreadPoolExecutor(max_workers=3) as aside:
        charged = aside.submit(_charges_aside, conn.engine, sql, cells)
        read = aside.submit(_read_visits, conn.engine, cells)
        # the retention counts (Python only, some seconds a million appointments) on a thread as soon as the visits
        # are read: it runs while this one waits for the server, up to the retention's own statement. Worked out in
        # line (after the coarse grains were sent, or right after the reading) they kept the server waiting for them;
        # started only once this thread took the visits, they left a core idle while it took in the charges.
        counted = aside.submit(lambda: read.result().count_retention())
        with round_trip(conn):
            _fine_rows(conn, sql, cells, third_available, visits=False, charges=False)
            # the cells' histograms are all written now (none comes from the charges or the visits): their coarse
            # grains are summed while the other sessions work, not after everything else
            _coarse_grains(conn, sql, cells, rollups=("hist",))
        # whichever of the charges' rows and the visits is ready first is written first (the session waited some
        # 5 s of a million appointments' catch-up for the charges while the visits were there)
        ready: list[Future[Any]] = [charged, read]
        first = wait(ready, return_when=FIRST_COMPLETED).done
        coarse = ["cells", "credits"]  # the coarse grains still to sum
        if charged in first:
            _take_in(conn, charged.result())  # raises what it raised
            if not read.done():  # the credits are all written: their coarse grains while the visits are read
                _coarse_grains(conn, sql, cells, rollups=(coarse.pop(),))
        changes = read.result()
        visit_rollup.write_changes(conn, changes)
        if charged not in first:
            _take_in(conn, charged.result())
        if len(cells) >= _WHOLE_BATCH_CELLS:
            # the visits' fine rows are read from the rows just written: counted before (an empty table, after a
            # backfill), the planner read them by index and sorted them, 2.7 of the statement's 6.0 s (a million
            # appointments, at load 3), where counted it hashes them
            conn.execute(sa.text(f"ANALYZE {report_visits.name}"))
        others = changes.changed - cells
        third_available = _third_available_rows(conn, others)
        with round_trip(conn):
            _fine_rows(conn, sql, cells, [], others=False)
            if others:
                _fine_rows(conn, sql, others, third_available)
            _coarse_grains(conn, sql, cells, rollups=coarse)
            if others:
                _coarse_grains(conn, sql, others)
            counted.result()  # raises what it raised
            changes.retention(conn)
    refresh_summaries(conn, cells | others)
    return changes.held


def _read_visits(engine: sa.Engine, cells: set[Cell]) -> visit_rollup.VisitChanges:
    """``visits.read_changes`` of ``cells`` on a session of its own: the committed rows (nothing the refresh's
    transaction has written yet is among them)."""
    with engine.connect() as reader:
        _catch_up_settings(reader)
        return visit_rollup.read_changes(reader, cells)


def _third_available_rows(conn: sa.Connection, cells: set[Cell]) -> list[dict[str, Any]]:
    return [row for practice, months in sorted(_months_by_practice(cells).items())  # slots only
            for row in _third_available(conn, practice, sorted(months))]


def _fine_rows(conn: sa.Connection, sql: Sql, cells: set[Cell], third_available: list[dict[str, Any]], *,
               visits: bool = True, others: bool = True, charges: bool = True) -> None:
    """Send the statements that replace the fine rows of ``cells`` (their rollups of every grain deleted first):
    ``visits``, the visits' rows (from ``report_visits``); ``others``, every other source's, with the cells'
    ``third_available`` histogram rows, and (``charges``) the charges' with their remittances' and the credits
    (else the caller takes those in from ``_charges_aside``). Only ``others`` deletes: the visits' rows alone are
    added to cells whose other rows were just written."""
    params = _batch_params(cells)
    dims = ", ".join(DIMS)
    sources = {source.name: source for source in measure_sources(sql, batch=True, staged=True)}

    def add_rows(select: str, own: Sequence[str]) -> None:
        conn.execute(_text(f"INSERT INTO {report_fine_cells.name} ({dims}, month, week, {', '.join(own)}) {select}"),
                     params)

    if others:  # first: the rows about to be added must not be deleted with the old
        for table in (report_cells, report_hist, report_credits, report_fine_cells, report_fine_hist,
                      report_fine_credits):
            for practice, months in sorted(_months_by_practice(cells).items()):  # (practice, month) IN (pairs)
                conn.execute(sa.delete(table).where(  # made SQLite scan the table
                    table.c.practice == practice, table.c.month.in_(months)))
    if visits:
        add_rows(sources["visits"].select_sql(own=True, total=sql.total), sources["visits"].own_measures())
    if not others:
        return
    staged = {table: stage for table, stage in staged_sql(sql).items() if charges or table != STAGED_CHARGES}
    for stage in staged.values():
        conn.execute(_text(stage), params)
    if sql.pg:  # a temporary table has no statistics: without, the remittances' join was sorted, not hashed
        # the join's columns only (and the appointments' practice): the same plans, where counting every column took
        # 0.84 s of a million appointments' catch-up, against 0.25 s
        counted = {STAGED_CHARGES: f"{STAGED_CHARGES} (practice, source_id)",
                   STAGED_APPOINTMENTS: f"{STAGED_APPOINTMENTS} (practice)"}
        conn.execute(sa.text(f"ANALYZE {', '.join(counted[table] for table in staged)}"))
    if charges:
        add_rows(*_charges_and_remittances_sql(sources, sql.total))
    for name, source in sources.items():
        if name not in ("charges", "remittances", "visits"):
            add_rows(source.select_sql(own=True, total=sql.total), source.own_measures())
    for _, select in _hist_sources(sql, batch=True, staged=True):
        conn.execute(_text(f"INSERT INTO {report_fine_hist.name} ({dims}, month, week, metric, value, n) "
                           f"{select}"), params)
    insert_rows(conn, report_fine_hist, third_available)
    if charges:
        conn.execute(_text(f"INSERT INTO {_FINE_CREDITS} {_credits_sql(sql)}"), params)
    for name in staged:
        conn.execute(sa.text(f"DROP TABLE {name}"))


# A catch-up transaction of at least this many cells on PostgreSQL reads the fine rows for the coarse grains with one
# statement for all its cells, once the planner has counted the rows it just wrote (below: ``_coarse_grains``)
_WHOLE_BATCH_CELLS = 32


_COARSE = {"cells": report_fine_cells, "hist": report_fine_hist, "credits": report_fine_credits}  # what each reads


def _coarse_grains(conn: sa.Connection, sql: Sql, cells: set[Cell], rollups: Sequence[str] = tuple(_COARSE)) -> None:
    """The coarse grains the common "by site" reports read: by week, summed from the fine rows, then by month
    (week '', so a month report reads one row per month, not one per week of it) summed from the weekly rows, a
    few per month where the fine rows are about one per record. The only rows in no week, imported costs, are
    kept apart from the weekly cells and added to the monthly from ``report_costs``. ``rollups``: of which
    (``_COARSE``: the cells, the histograms, the credits), each once its fine rows are all written.

    A practice at a time: with one practice the fine table's index is read by it however stale the planner's
    statistics (after a backfill into empty rollups, a condition on several practices had it read every practice's
    rows, and sort them); the rows of a practice lie scattered in the table, though, and a catch-up's large
    transaction read them a row at a time (9.9 s of 125 s for a million appointments). So on PostgreSQL a
    transaction of ``_WHOLE_BATCH_CELLS`` or more first has the planner count what it just wrote (``ANALYZE``
    sees the transaction's own rows) and reads all its cells with one statement per rollup."""
    whole = conn.dialect.name == "postgresql" and len(cells) >= _WHOLE_BATCH_CELLS
    if whole:
        # every column: the reports that read the fine rows next plan with these statistics too (counting only the
        # columns these statements read saved 0.3-0.7 s, and the first report by site and month took 0.43 s, not 0.24)
        conn.execute(sa.text(f"ANALYZE {', '.join(_COARSE[name].name for name in rollups)}"))
        batches = [(_batch_params(cells), _cells_in(""), True)]
    else:
        where = "practice = :p AND month >= :lo AND month < :hi AND month IN :months"
        batches = [(_params(practice, sorted(months)), where, False)
                   for practice, months in sorted(_months_by_practice(cells).items())]
    costs = next(s for s in measure_sources(sql) if s.name == "costs")
    own = costs.own_measures()
    weekly = f"grain = '{SITE_WEEK_GRAIN}'"
    sums = ", ".join(f"COALESCE({sql.total}({m}), 0)" for m in MEASURES)  # a fine row has NULL for another source's
    cols, hist_cols = ", ".join([*DIMS, "month", "week", *MEASURES]), f"{', '.join(DIMS)}, month, week, metric, value"
    credit_cols = f"{', '.join(DIMS)}, month, week, paid_month, paid_week, credits_cents"
    for params, cells_are, batch in batches:
        costs_sql = replace(costs, where=_cells_in("k.") if batch else costs.where).select_sql(own=True,
                                                                                               total=sql.total)
        padded = ", ".join([*DIMS, "month", "week", *(m if m in own else "NULL" for m in MEASURES)])
        for grain, week in ((SITE_WEEK_GRAIN, "week"), ("site", "''")):
            by_week = "" if week == "''" else ", week"
            site = grain == "site"
            cells_from = (f"SELECT {cols} FROM report_cells WHERE {weekly} AND {cells_are} UNION ALL "
                          f"SELECT {padded} FROM ({costs_sql}) k" if site else
                          f"SELECT {cols} FROM {report_fine_cells.name} WHERE week <> '' AND {cells_are}")
            if "cells" in rollups:
                conn.execute(_text(f"INSERT INTO report_cells (grain, {cols}) SELECT '{grain}', practice, '*', '*', "
                                   f"service_line, '*', month, {week}, {sums} FROM ({cells_from}) u "
                                   f"GROUP BY practice, service_line, month{by_week}"), params)
            hist_from = (f"SELECT {hist_cols}, n FROM report_hist WHERE {weekly} AND {cells_are}" if site else
                         f"SELECT {hist_cols}, n FROM {report_fine_hist.name} WHERE {cells_are}")
            if "hist" in rollups:
                conn.execute(_text(f"INSERT INTO report_hist (grain, {hist_cols}, n) SELECT '{grain}', practice, "
                                   f"'*', '*', service_line, '*', month, {week}, metric, value, {sql.total}(n) "
                                   f"FROM ({hist_from}) h "
                                   f"GROUP BY practice, service_line, month{by_week}, metric, value"), params)
            paid_week = "paid_week" if week == "week" else "''"
            paid_by_week = "" if week == "''" else ", week, paid_week"
            credits_from = (f"SELECT {credit_cols} FROM report_credits WHERE {weekly} AND {cells_are}" if site else
                            f"SELECT {credit_cols} FROM {report_fine_credits.name} WHERE {cells_are}")
            if "credits" in rollups:
                conn.execute(_text("INSERT INTO report_credits (grain, practice, location, provider, service_line, "
                                   f"financial_class, month, week, paid_month, paid_week, credits_cents) SELECT "
                                   f"'{grain}', practice, '*', '*', service_line, '*', month, {week}, paid_month, "
                                   f"{paid_week}, {sql.total}(credits_cents) FROM ({credits_from}) k "
                                   f"GROUP BY practice, service_line, month, paid_month{paid_by_week}"), params)


def _anchors(month: str) -> Iterator[tuple[dt.date, str]]:
    """The days "third next available" is measured from in a month: its first day, and each Monday in it
    (a week's figure is its Monday's, kept apart as WEEKLY_THIRD_AVAILABLE)."""
    first = dt.date.fromisoformat(f"{month}-01")
    yield first, "third_available_days"
    day = first + dt.timedelta(days=-first.weekday() % 7)
    while day.strftime("%Y-%m") == month:
        yield day, WEEKLY_THIRD_AVAILABLE
        day += dt.timedelta(days=7)


def _third_available(conn: sa.Connection, practice: str, months: list[str]) -> list[dict[str, Any]]:
    """The ``report_hist`` rows of days from each month's first day (and each Monday) to the third free slot
    (per location, provider, service line)."""
    first = dt.date.fromisoformat(f"{months[0]}-01")
    until = dt.date.fromisoformat(f"{months[-1]}-01") + dt.timedelta(days=31 + THIRD_AVAILABLE_HORIZON)
    rows = conn.execute(sa.text(
        f"SELECT COALESCE(s.location_source_id, ''), {provider_key('s')}, COALESCE(s.service_line, ''), "
        "substr(s.start, 1, 10) FROM slots s WHERE s.practice = :p AND s.start >= :lo AND s.start < :hi AND "
        "s.status = 'free'"),
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
    return [{"practice": practice, "location": loc, "provider": prov, "service_line": line,
             "financial_class": "", "month": month, "week": week, "metric": metric, "value": value, "n": n}
            for (loc, prov, line, month, week, metric, value), n in hist.items()]


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
    if conn.dialect.name == "postgresql":  # a refresh running elsewhere finishes first
        conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({REFRESH_LOCK})"))
    conn.execute(sa.delete(report_dirty))  # everything is recomputed below
    conn.execute(sa.delete(report_refreshing))
    cells = stored_cells(conn)
    for practice, months in sorted(_months_by_practice(cells).items()):
        # a practice at a time: the visit histories held in memory stay about one practice's patients (every
        # practice at once held SQLite at 7.4 GB after a 10M backfill, one at a time at 2.5 GB)
        refresh(conn, {(practice, month) for month in months})
    return len(cells)
