"""The canonical store: idempotent, batched upserts on ``(practice, kind, source_id)``.

Rules, chosen so that any set of messages, replayed any number of times, in any
arrival order and any split into batches, leaves the same store:
- every record carries the time of the event it reports (``event_time``); a
  record's *stamp* is that time in UTC followed by its message's id, so of two
  events at the same time the later message wins;
- each field keeps the value of the latest stamp that carried one (a per-field
  stamp column beside it): a message without a provider NPI, or an older message
  processed later, never erases or overwrites what a later event said; a field a
  message does not carry (None) keeps its stored value;
- a reprocess of the same message has the same stamp and rewrites its values
  (after a mapping fix, say);
- the row's ``event_time`` and ``message_id`` are those of its latest event;
- every (record, message) pair is kept in ``lineage``, so any figure can be traced
  back to every message behind it;
- a patient merge re-points the prior patient's records to the surviving one,
  now and for records of the prior id that arrive later; the merge row is kept.
  On PostgreSQL a batch that merges holds off the other batches of its practice
  (and waits for those under way): at READ COMMITTED neither the merge's re-pointing
  nor a concurrent batch's merge look-up sees the other's uncommitted rows, so a record
  of the prior id written meanwhile would otherwise keep it (``_lock_practices``).
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from hub.model.kinds import KINDS, PATIENT_REFERENCES
from hub.model.tables import RECORD_TABLES, STAMP_LENGTH, STAMP_SUFFIX, MoneyCents, UTCDateTime, lineage, stamp_column

_NO_TIME = "0" * (STAMP_LENGTH - 12)  # a record without an event time: its message's id alone orders it
_NOTHING = object()  # no record's event time (``upsert_records``: none seen yet)


def event_stamp(event_time: dt.datetime | None, message_id: int | None) -> str:
    """Fixed-width digits that sort as (event time in UTC, message id): compared as text alike on
    SQLite and PostgreSQL."""
    moment = _NO_TIME if event_time is None else _texts(event_time)[2] or _utc_digits(event_time)
    return f"{moment}{message_id or 0:012d}"


def _utc_digits(value: dt.datetime) -> str:
    u = value.astimezone(dt.UTC)
    # %-formatting: about 2.5 times cheaper than seven format specs (one stamp a message)
    return "%04d%02d%02d%02d%02d%02d%06d" % (  # noqa: UP031
        u.year, u.month, u.day, u.hour, u.minute, u.second, u.microsecond)


# Date-times by identity → (the date-time, its ISO text, its UTC digits for a stamp). Validation reads one
# text in one zone into one object (``hub.model.schemas._datetime_in``), so a message's event time and a
# feed's slot times come back as the same objects: their texts are made once (an aware date-time's
# ``isoformat`` and ``astimezone`` ask its zone for the offset each time). Keyed by ``id``, not by value
# (hashing an aware date-time asks the zone too); the entry holds the object, so the id is not reused
# while it is there, and ``is`` confirms it.
# The UTC digits are '' for a time that has none (year 1 east of UTC): a stored field only needs its text, and an
# event time there fails in ``_utc_digits`` as it always did.
_TEXTS: dict[int, tuple[dt.datetime, str, str]] = {}
_TEXTS_MAX = 16384


def _texts(value: dt.datetime) -> tuple[dt.datetime, str, str]:
    found = _TEXTS.get(id(value))
    if found is not None and found[0] is value:
        return found
    try:
        digits = _utc_digits(value)
    except OverflowError:
        digits = ""
    found = (value, value.isoformat(), digits)
    if len(_TEXTS) >= _TEXTS_MAX:
        _TEXTS.clear()
    _TEXTS[id(value)] = found
    return found


@functools.cache
def _stamped(kind: str) -> tuple[tuple[str, str], ...]:
    return tuple((f.name, stamp_column(f.name)) for f in KINDS[kind])


def _fold(previous: dict[str, Any], row: dict[str, Any], kind: str) -> dict[str, Any]:
    """Two writes of one record in one batch, folded as the database would apply them in turn."""
    merged = dict(previous)
    for name, stamp in _stamped(kind):
        if row.get(stamp) is not None and row[stamp] >= (previous.get(stamp) or ""):
            merged[name], merged[stamp] = row[name], row[stamp]
    if row["stamp"] >= previous["stamp"]:
        for name in ("event_time", "message_id", "stamp"):
            merged[name] = row.get(name)
    return merged


@functools.cache
def _stamp_columns(kind: str) -> dict[str, str]:
    return dict(_stamped(kind))


def upsert_records(conn: sa.Connection, items: Sequence[tuple[dict[str, Any], int | None]]) -> int:
    """Write validated records (each with the id of its message) in the caller's transaction."""
    if not items:
        return 0
    # the batch's one timestamp, converted for the database once rather than once per row
    now = _converter(UTCDateTime(), conn.dialect.name)(dt.datetime.now(dt.UTC))
    practices: set[str] = set()
    merges = []
    for r, m in items:  # one pass: the batch's practices, and its merges
        practices.add(r["practice"])
        if r["kind"] == "patient_merge":
            merges.append((r, m))
    _lock_practices(conn, practices, {r["practice"] for r, _ in merges})
    items = _apply_known_merges(conn, items, practices)
    sqlite_ = conn.dialect.name == "sqlite"
    # per kind and key: a record as it came (``_Pending``, written through its plan) or, once two
    # writes of one key in the batch have been folded into per-field stamps, its row
    by_kind: dict[str, dict[tuple[str, str], _Pending | dict[str, Any]]] = defaultdict(dict)
    lineage_rows: dict[tuple[str, str, str, int], None] = {}
    stamps: dict[tuple[Any, int | None], tuple[str, str | None]] = {}  # a message's records share its time
    last_time: Any = _NOTHING
    last_message: int | None = None
    known: tuple[str, str | None] = ("", None)
    kind_rows: dict[tuple[str, str], _Pending | dict[str, Any]] = {}
    last_kind = None
    # (SQLite) per kind, the fields of its last record and their plan: a kind's records mostly carry
    # one set of fields, and comparing to the last one costs less than ``_plan``'s cache look-up
    shapes: dict[str, tuple[tuple[str, ...], _Plan]] = {}
    for record, message_id in items:
        kind = record["kind"]
        event_time = record.get("event_time")
        # a message's records come one after another with one event time: no look-up (an aware
        # date-time's hash asks its zone for the offset) while the time and message stay the same
        if event_time is not last_time or message_id != last_message:
            when = (event_time, message_id)
            found = stamps.get(when)
            if found is None:
                found = stamps[when] = (event_stamp(event_time, message_id),
                                        None if event_time is None else _texts(event_time)[1])
            known, last_time, last_message = found, event_time, message_id
        practice, source_id = record["practice"], record["source_id"]
        key = (practice, source_id)
        if kind is not last_kind:
            kind_rows = by_kind[kind]
            last_kind = kind
        if not sqlite_:
            plan = None
        else:
            if None in record.values():  # the fields it carries: those not None
                keys = tuple([name for name, value in record.items() if value is not None])
            else:  # the usual record: every key a field it carries (tested in C, not a step per field)
                keys = tuple(record)
            shape = shapes.get(kind)
            if shape is not None and shape[0] == keys:
                plan = shape[1]
            else:
                plan = _plan(kind, keys)
                shapes[kind] = (keys, plan)
        # a tuple, not an object: made per record (see _Pending for its fields)
        pending = (record, known[0], known[1], message_id, plan)
        previous = kind_rows.get(key)
        if previous is None:
            kind_rows[key] = pending
        elif isinstance(previous, tuple) and plan is not None and (kept := _dominant(previous, pending)) is not None:
            kind_rows[key] = kept  # one of the two writes would overwrite every field of the other
        else:
            earlier = previous if isinstance(previous, dict) else _row_of(previous, now)
            kind_rows[key] = _fold(earlier, _row_of(pending, now), kind)
        if message_id is not None:
            lineage_rows[(kind, practice, source_id, message_id)] = None
    # PostgreSQL: rows are written in one order (kind, then key) whatever the batch's order: two
    # workers writing batches that share rows (a patient in both) then wait for each other instead
    # of deadlocking. SQLite has one writer at a time, and sorting cost more than it saved (HL7
    # ingest: about 5 us a message, measured), so rows go in the batch's order there.
    for kind in sorted(by_kind):
        rows = by_kind[kind]
        planned: dict[_Plan, list[tuple[Any, ...]]] = defaultdict(list)
        folded = []
        for row in (rows.values() if sqlite_ else [rows[key] for key in sorted(rows)]):
            if isinstance(row, dict):
                folded.append(row)
            elif (plan := row[4]) is not None:
                planned[plan].append(plan.parameters(row, now))
            else:
                folded.append(_row_of(row, now))
        for plan, parameters in planned.items():
            _execute_rows(conn, plan.sql, plan.chunk_sql, plan.chunk, parameters)
        if folded:
            _upsert_kind(conn, kind, folded)
    if lineage_rows:
        if sqlite_:
            _execute_rows(conn, _LINEAGE_SQL, _LINEAGE_CHUNK_SQL, _LINEAGE_CHUNK, list(lineage_rows))
        else:
            conn.exec_driver_sql(_LINEAGE_SQL.replace("?", "%s"), sorted(lineage_rows))
    for record, _ in merges:
        apply_patient_merge(conn, record["practice"], record["prior_source_id"], record["surviving_source_id"])
    return len(items)


# SQLite: rows go in chunks to a statement of as many VALUES rows, the same statement for each chunk (the
# rest one a statement). A statement's run has a fixed cost (opening the table's and each index's cursor,
# binding, stepping) that a row of a multi-row INSERT does not pay; each row is inserted, or upserted, in
# turn as by one statement a row, so the rows and their row ids are the same.
CHUNK = 64  # rows a statement at most (128 measured no cheaper)
_MAX_PARAMETERS = 999  # SQLite before 3.32 binds at most 999 parameters a statement


def _rows_sql(sql: str, width: int, stamp_at: int | None = None) -> tuple[str, int]:
    """``sql`` (one row of ``width`` parameters, numbered ``?1``… when ``stamp_at`` is given: the one
    stamp's number, read again by the stamp columns after it) written for a chunk of rows, and their number."""
    chunk = min(CHUNK, _MAX_PARAMETERS // width)
    head, rest = sql.split(" VALUES (", 1)
    row, tail = rest.split(")", 1)
    if stamp_at is None:
        rows = [f"({row})"] * chunk
    else:
        count = row.count(", ") + 1
        rows = ["(" + ", ".join(f"?{r * width + min(i, stamp_at)}" for i in range(1, count + 1)) + ")"
                for r in range(chunk)]
    return f"{head} VALUES {', '.join(rows)}{tail}", chunk


def _execute_rows(conn: sa.Connection, sql: str, chunk_sql: str, chunk: int,
                  parameters: list[tuple[Any, ...]]) -> None:
    """SQLite: ``sql`` (one row) run for each of ``parameters``, ``chunk`` rows a run of ``chunk_sql``."""
    full = len(parameters) - len(parameters) % chunk
    if full:
        flat = list(itertools.chain.from_iterable(parameters[:full]))
        step = chunk * len(parameters[0])
        conn.exec_driver_sql(chunk_sql, [tuple(flat[i:i + step]) for i in range(0, len(flat), step)])
    if full < len(parameters):
        conn.exec_driver_sql(sql, parameters[full:])


_LINEAGE_SQL = (f"INSERT INTO {lineage.name} (kind, practice, source_id, message_id) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING")
_LINEAGE_CHUNK_SQL, _LINEAGE_CHUNK = _rows_sql(_LINEAGE_SQL, 4)


class _Plan:
    """How a record of one kind carrying one set of fields is written on SQLite: the statement for
    those fields, and its parameters taken straight from the record (every field it carries has the
    record's one stamp), without a row dict of the fields and their stamps in between."""

    __slots__ = ("sql", "chunk_sql", "chunk", "fields", "parameters")

    def __init__(self, kind: str, fields: tuple[str, ...]) -> None:
        self.sql, converters = _upsert_statement("sqlite", kind, fields, one_stamp=True)
        self.fields = frozenset(fields)
        width = len(fields) + 6  # the parameters of a row: those of ``expected`` below up to the stamp
        self.chunk_sql, self.chunk = _rows_sql(self.sql, width, width)
        # the statement's columns: practice, source_id, the fields (declared order), the row's own
        # columns, then the fields' stamps (declared order); see _record_table
        values = ("practice", "source_id", *fields)
        stamped = [stamp_column(f) for f in fields]
        expected = [*values, "event_time", "message_id", "updated_at", "stamp", *stamped]
        if [name for name, _ in converters] != expected:
            raise AssertionError(f"{kind}: the upsert statement's columns are not in the order the plan expects")
        by_name = dict(converters)
        datetimes = {f.name for f in KINDS[kind] if f.type == "datetime"}
        # ``parameters(pending, now)``: the statement's parameters, written out as one tuple of the record's
        # values, each through its converter if it has one (a date-time field is stored as ISO text with its
        # offset, see tables.py), then the row's own columns, the stamp last: the statement binds it once
        # for every field's stamp column (``one_stamp``)
        scope: dict[str, Any] = {}
        picked = []
        for i, name in enumerate(values):
            convert = _isoformat if name in datetimes else by_name[name]
            if convert is None:
                picked.append(f"record[{name!r}]")
            else:
                scope[f"c{i}"] = convert
                picked.append(f"c{i}(record[{name!r}])")
        # the text is made here from the model's own field names
        exec(f"def parameters(pending, now):\n    record, stamp, event_time, message_id, _ = pending\n"
             f"    return ({', '.join(picked)}, event_time, message_id, now, stamp)", scope)
        self.parameters: Any = scope["parameters"]


def _isoformat(value: Any) -> Any:
    return _texts(value)[1] if type(value) is dt.datetime else value


@functools.cache
def _plan(kind: str, keys: tuple[str, ...]) -> _Plan:
    fields = _present(kind, keys)
    assert fields is not None
    return _Plan(kind, fields)


# A record waiting to be written: (the record, its stamp, its event time as text, its message, (SQLite)
# its plan). A plain tuple: one is made per record, and a class's __init__ cost several times more.
_Pending = tuple[dict[str, Any], str, "str | None", "int | None", "_Plan | None"]


def _dominant(previous: _Pending, new: _Pending) -> _Pending | None:
    """Of two writes of one key, the one that leaves nothing of the other (what ``_fold`` of the
    two would give), when there is one: the later, or a tie's second, carrying every field of the
    other; or the strictly earlier carrying every field of the later one. None: fold them."""
    old_plan, new_plan = previous[4], new[4]
    assert old_plan is not None and new_plan is not None
    if new[1] >= previous[1] and new_plan.fields >= old_plan.fields:
        return new
    if previous[1] > new[1] and old_plan.fields >= new_plan.fields:
        return previous
    return None


def _row_of(pending: _Pending, now: Any) -> dict[str, Any]:
    """The record as a row: its fields and, beside each, its stamp column (for ``_fold`` and
    ``_upsert_kind``). A field left out (None) is NULL, and so is its stamp; date-times are
    stored as ISO text with their offset, the practice's (see tables.py)."""
    record, stamp, event_time, message_id, _ = pending
    stamp_of = _stamp_columns(record["kind"])
    row: dict[str, Any] = {"stamp": stamp}
    for name, value in record.items():
        if value is not None and name != "kind":
            row[name] = value.isoformat() if type(value) is dt.datetime and name != "event_time" else value
            stamp_name = stamp_of.get(name)
            if stamp_name is not None:
                row[stamp_name] = stamp
    if event_time is not None:
        row["event_time"] = event_time
    row["message_id"] = message_id
    row["updated_at"] = now
    return row


_MERGE_LOCK = 7305532  # advisory lock namespace (7305531: the migrator's)


def _lock_practices(conn: sa.Connection, practices: set[str], merging: set[str]) -> None:
    """PostgreSQL: a per-practice lock for the transaction, exclusive for a batch that merges
    patients of the practice, shared (batches do not wait for each other) otherwise. Taken before
    any write, in one order, so it cannot deadlock with row locks. SQLite writers take turns anyway."""
    if conn.dialect.name != "postgresql":
        return
    for practice in sorted(practices):
        lock = "pg_advisory_xact_lock" if practice in merging else "pg_advisory_xact_lock_shared"
        conn.exec_driver_sql(f"SELECT {lock}(%s, hashtext(%s))", (_MERGE_LOCK, practice))


_ROW_COLUMNS = ("practice", "source_id", "event_time", "message_id", "updated_at", "stamp")


def _upsert_kind(conn: sa.Connection, kind: str, rows: list[dict[str, Any]]) -> None:
    # Hot path: statements written once per (database, kind, fields) and DBAPI parameter tuples made
    # by the converters below; SQLAlchemy's per-row bind processing costs as much as the database.
    dialect = conn.dialect.name
    if dialect != "sqlite":
        # every column, in key order: concurrent batches sharing rows lock them in one order
        groups: dict[tuple[str, ...] | None, list[dict[str, Any]]] = {None: rows}
    else:
        # SQLite has one writer at a time, so rows can go by the fields they carry: a statement
        # then binds and updates just those columns (a record carries a fraction of its kind's
        # fields, and each field has its stamp beside it)
        groups = defaultdict(list)
        for row in rows:
            groups[tuple(row)].append(row)
    for fields, group in groups.items():
        sql, converters = _upsert_statement(dialect, kind, _present(kind, fields))
        conn.exec_driver_sql(sql, [tuple([row.get(name) if convert is None else convert(row.get(name))
                                          for name, convert in converters]) for row in group])


@functools.cache
def _present(kind: str, keys: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The fields (of the kind's declaration) among a row's keys; None: all of them."""
    if keys is None:
        return None
    given = set(keys)
    return tuple(f.name for f in KINDS[kind] if f.name in given)


@functools.cache
def _upsert_statement(dialect_name: str, kind: str, fields: tuple[str, ...] | None = None, one_stamp: bool = False
                      ) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """INSERT … ON CONFLICT DO UPDATE in the syntax SQLite (3.24+) and PostgreSQL share, for the
    given fields (None: all); a field not written keeps its stored value and stamp.

    ``one_stamp`` (SQLite, ``_Plan``: every field written has the record's one stamp): numbered
    parameters, the row's ``stamp`` bound once and read for every field's stamp column, so a row's
    parameters end at its stamp (the converters still name every column, in the statement's order).

    Each field takes the incoming value when the incoming stamp of that field is at least the
    stored one (a field the message left empty has no stamp, so it keeps the stored value); the
    row's event time and message follow its latest stamp. See the module docstring."""
    dialect = {"sqlite": sqlite.dialect, "postgresql": postgresql.dialect}[dialect_name]()
    quote = dialect.identifier_preparer.quote
    table = RECORD_TABLES[kind]
    name = quote(table.name)
    chosen = {*_ROW_COLUMNS, *(f for f, _ in _stamped(kind) if fields is None or f in fields)}
    chosen |= {stamp_column(f) for f in chosen if f in _stamp_columns(kind)}
    columns = [c for c in table.c if c.name in chosen]
    placeholder = "?" if dialect_name == "sqlite" else "%s"
    values = [f"{placeholder}::json" if dialect_name == "postgresql" and isinstance(c.type, sa.JSON) else placeholder
              for c in columns]
    if one_stamp:
        assert dialect_name == "sqlite"
        stamp_at = [c.name for c in columns].index("stamp") + 1
        # the stamp columns come after ``stamp`` (tables.py): each reads its parameter
        values = [f"?{i}" if i <= stamp_at else f"?{stamp_at}" for i in range(1, len(columns) + 1)]
        if any(c.name.endswith(STAMP_SUFFIX) for c in columns[:stamp_at]):
            raise AssertionError(f"{kind}: a field's stamp column before the row's stamp")
    # stamps are digits of one width: byte order is their order (and C collation is the fast one)
    collate = ' COLLATE "C"' if dialect_name == "postgresql" else ""

    def newer(stamp: str) -> str:
        return f"excluded.{quote(stamp)}{collate} >= COALESCE({name}.{quote(stamp)}, ''){collate}"

    def take_if(condition: str, column: str) -> str:
        return f"{quote(column)} = CASE WHEN {condition} THEN excluded.{quote(column)} ELSE {name}.{quote(column)} END"

    updates = []
    for field, stamp in _stamped(kind):
        if field in chosen:
            updates += [take_if(newer(stamp), field), take_if(newer(stamp), stamp)]
    updates += [take_if(newer("stamp"), column) for column in ("event_time", "message_id", "stamp")]
    updates.append(f"{quote('updated_at')} = excluded.{quote('updated_at')}")
    sql = (f"INSERT INTO {name} ({', '.join(quote(c.name) for c in columns)}) VALUES ({', '.join(values)}) "
           f"ON CONFLICT (practice, source_id) DO UPDATE SET {', '.join(updates)}")
    # updated_at comes converted already (upsert_records)
    return sql, tuple((c.name, None if c.name == "updated_at" else _converter(c.type, dialect_name))
                      for c in columns)


# a feed repeats its service, posting and birth dates: each one's ISO text made once (``date.isoformat``
# formats through a C format string each time, several times the cost of the look-up)
_date_text = functools.lru_cache(maxsize=16384)(dt.date.isoformat)


def _converter(column_type: Any, dialect_name: str) -> Any:
    """Python value → DBAPI parameter, as the column's SQLAlchemy type would bind it."""
    sqlite_ = dialect_name == "sqlite"
    if isinstance(column_type, MoneyCents):
        return lambda v: None if v is None else MoneyCents.cents(v)
    if isinstance(column_type, UTCDateTime):
        # SQLAlchemy's SQLite DateTime text format, so rows read back the same whichever path wrote them
        return (lambda v: None if v is None else v.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")) if sqlite_ \
            else (lambda v: None if v is None else v.astimezone(dt.UTC).replace(tzinfo=None))
    if isinstance(column_type, sa.JSON):  # orjson writes dates itself; Decimals become decimal strings
        return lambda v: None if v is None else orjson.dumps(v, default=str).decode()
    if isinstance(column_type, sa.Date):
        return (lambda v: None if v is None else _date_text(v) if type(v) is dt.date else v.isoformat()) if sqlite_ \
            else (lambda v: v)
    if isinstance(column_type, sa.Boolean) and sqlite_:
        return lambda v: None if v is None else int(v)
    return None  # passed as it is


def _merge_map(conn: sa.Connection, practice: str, ids: set[str]) -> dict[str, str]:
    merges = RECORD_TABLES["patient_merge"]
    mapping: dict[str, str] = {}
    # most practices have no merges at all: one index probe answers for the whole batch
    if not ids or conn.execute(sa.select(sa.literal(1)).where(merges.c.practice == practice).limit(1)).first() is None:
        return mapping
    pg = conn.dialect.name == "postgresql"
    frontier = set(ids)
    for _ in range(10):  # merge chains are short; the bound guards against a cycle in bad data
        if not frontier:
            break
        # PostgreSQL: one array parameter, so the statement text (and its plan) is the same for any batch
        wanted = merges.c.prior_source_id == sa.any_(sa.bindparam("ids", sorted(frontier),
                                                                  type_=postgresql.ARRAY(sa.String))) if pg \
            else merges.c.prior_source_id.in_(frontier)
        rows = conn.execute(sa.select(merges.c.prior_source_id, merges.c.surviving_source_id)
                            .where(merges.c.practice == practice, wanted)).all()
        frontier = set()
        for prior, surviving in rows:
            if surviving != prior and mapping.get(prior) != surviving:
                mapping[prior] = surviving
                frontier.add(surviving)
    # resolve chains a→b→c to a→c
    for prior in list(mapping):
        seen = {prior}
        target = mapping[prior]
        while target in mapping and target not in seen:
            seen.add(target)
            target = mapping[target]
        mapping[prior] = target
    return mapping


def _apply_known_merges(conn: sa.Connection, items: Sequence[tuple[dict[str, Any], int | None]],
                        practices: set[str]) -> Sequence[tuple[dict[str, Any], int | None]]:
    # most practices have no merges at all: one probe each answers for the whole batch, before a look at
    # every record's patient (``practices``: those of the items)
    merges = RECORD_TABLES["patient_merge"]
    merging = [practice for practice in sorted(practices)
               if conn.execute(sa.select(sa.literal(1)).where(merges.c.practice == practice).limit(1)).first()
               is not None]
    if not merging:
        return items
    wanted: dict[str, set[str]] = {practice: set() for practice in merging}
    for record, _ in items:
        ref = PATIENT_REFERENCES.get(record["kind"])
        if ref and record.get(ref) and record["practice"] in wanted:
            wanted[record["practice"]].add(record[ref])
    maps = {p: _merge_map(conn, p, ids) for p, ids in wanted.items()}
    if not any(maps.values()):
        return items
    out = []
    for record, message_id in items:
        ref = PATIENT_REFERENCES.get(record["kind"])
        target = maps.get(record["practice"], {}).get(record.get(ref, "")) if ref else None
        out.append(({**record, ref: target}, message_id) if ref and target else (record, message_id))
    return out


def apply_patient_merge(conn: sa.Connection, practice: str, prior: str, surviving: str) -> None:
    for kind, column in PATIENT_REFERENCES.items():
        table = RECORD_TABLES[kind]
        conn.execute(sa.update(table).where(table.c.practice == practice, table.c[column] == prior)
                     .values({column: surviving}))


def delete_practice(conn: sa.Connection, practice: str) -> None:
    """Remove every canonical row and lineage entry of a practice (its messages stay)."""
    for table in RECORD_TABLES.values():
        conn.execute(sa.delete(table).where(table.c.practice == practice))
    conn.execute(sa.delete(lineage).where(lineage.c.practice == practice))


def fetch_records(conn: sa.Connection, kind: str, practice: str | None = None) -> list[dict[str, Any]]:
    table = RECORD_TABLES[kind]
    q = sa.select(table).order_by(table.c.practice, table.c.source_id)
    if practice:
        q = q.where(table.c.practice == practice)
    return [dict(r._mapping) for r in conn.execute(q)]


def count_records(conn: sa.Connection, practice: str | None = None) -> dict[str, int]:
    out = {}
    for kind, table in RECORD_TABLES.items():
        q = sa.select(sa.func.count()).select_from(table)
        if practice:
            q = q.where(table.c.practice == practice)
        out[kind] = conn.execute(q).scalar_one()
    return out


def lineage_of(conn: sa.Connection, kind: str, practice: str, source_id: str) -> list[int]:
    q = (sa.select(lineage.c.message_id).where(lineage.c.kind == kind, lineage.c.practice == practice,
                                                lineage.c.source_id == source_id).order_by(lineage.c.message_id))
    return list(conn.execute(q).scalars())
