"""The message store: every message as it arrived, saved before it is acknowledged.

A message is stored once. What makes two arrivals the same message is the
connector's to say (``Connector.dedup_key``; default: identical bytes): a repeat
for the same practice is recorded as a row of status ``duplicate`` pointing at the
original (so the arrival is visible and auditable) but carries no copy and yields
no records. The ``dedup_key`` column holds ``practice:key`` (unique while the row
holds the content); ``content_hash`` is always the sha256 of the bytes.

Where the connector promises unique control ids (``Connector.unique_control_ids``,
HL7 v2 MSH-10), a new message that repeats a stored message's sender and control
id with other content is not a duplicate: it is stored, processed, and flagged
``control-id-reused`` (column ``flag``), so the sender's reuse is visible. Two
arrivals saved at the same moment by different processes do not see each other
for this check (the flag is advice; the message itself is never lost).

Statuses: ``received`` (stored, not yet processed), ``processed``, ``error`` (with
a reason; reprocessable), ``duplicate``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import orjson
import sqlalchemy as sa

from hub.connector import DEDUP_KEY_MAX, content_key
from hub.model.tables import RECORD_TABLES, lineage, messages
from hub.store.engine import fetch_by_keys

STATUSES = ("received", "processed", "error", "duplicate", "resolved")
CONTROL_ID_REUSED = "control-id-reused"  # the flag of a message reusing a stored message's control id


class NewMessage(NamedTuple):  # a tuple: made per arrival, and a frozen dataclass costs several times more
    practice: str
    connector: str
    raw: bytes
    sender: str | None = None
    control_id: str | None = None
    message_type: str | None = None
    origin: str | None = None
    # the connector's dedup key (``Connector.store_key``); None: the content hash
    dedup_key: str | None = None
    # the connector promises unique control ids per sender: a reuse with other content is flagged
    unique_control_id: bool = False


class SavedMessage(NamedTuple):
    id: int
    duplicate_of: int | None
    # for a duplicate: how the original fared, so a resend gets the same answer the first one got
    original_error: str | None = None

    @property
    def duplicate(self) -> bool:
        return self.duplicate_of is not None


def content_hash(raw: bytes) -> str:
    return content_key(raw)


def store_key(practice: str, key: str) -> str:
    """The ``dedup_key`` column of a connector's key: one message per practice and key (at most
    64 + 1 + 64 characters; the content key of earlier versions gives the same column)."""
    if len(key) > DEDUP_KEY_MAX:
        key = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return f"{practice}:{key}"


def _keys(items: Sequence[NewMessage], digests: list[str]) -> list[str]:
    return [store_key(m.practice, m.dedup_key or digest) for m, digest in zip(items, digests, strict=True)]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def save_messages(conn: sa.Connection, items: Sequence[NewMessage], *,
                  now: dt.datetime | None = None) -> list[SavedMessage]:
    """Store a group of arrivals in the caller's transaction (one commit for the group).

    The first arrival of each dedup key not stored yet becomes a new message (``received``);
    every other arrival, a ``duplicate`` row of its original. Only the insert of the new messages
    is the dialect's own (``_INSERT_NEW``); the rest is the same on every store. ``now``: the arrival
    time to record (an aware UTC time; default the present)."""
    if not items:
        return []
    now = now or utcnow()
    digests = [content_hash(m.raw) for m in items]
    keys = _keys(items, digests)
    first: dict[str, int] = {}  # dedup key → index of its first arrival in the group
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    insert_new = _INSERT_NEW.get(conn.dialect.name, _insert_new_sqlite)
    stored, originals = insert_new(conn, items, digests, keys, list(first.values()), now)
    results: list[SavedMessage | None] = [None] * len(items)
    new: dict[int, int] = {}  # index in ``items`` → id of the message just stored
    for key, i in first.items():
        message_id = stored.get(key)
        if message_id is not None:
            new[i] = message_id
            results[i] = SavedMessage(message_id, None)
    if len(new) < len(items):
        _save_duplicates(conn, items, digests, keys, now, stored, originals, results)
    return [r for r in results if r is not None]


# A stored message by dedup key, as a repeat of it needs it: (id, its error when it is in error)
Originals = dict[str, tuple[int, str | None]]
_ORIGINALS = "SELECT dedup_key, id, status, error FROM messages WHERE dedup_key IN :keys"


def _originals(conn: sa.Connection, keys: Iterable[str]) -> Originals:
    return {key: (int(message_id), (error or "the first copy of this message is in error")
                  if status == "error" else None)
            for key, message_id, status, error in fetch_by_keys(conn, _ORIGINALS, keys)}


def _row(m: NewMessage, digest: str, now: dt.datetime, key: str | None, status: str, raw: bytes | None,
         extra: str, value: Any) -> dict[str, Any]:
    """An arrival's row (``extra``: the column of a new row, ``queued_at``, or of a duplicate, ``duplicate_of``)."""
    return {"practice": m.practice, "connector": m.connector, "received_at": now, "content_hash": digest,
            "dedup_key": key, "sender": m.sender, "control_id": m.control_id, "message_type": m.message_type,
            "origin": (m.origin or "")[:255] or None, "status": status, "attempts": 0, "raw": raw, extra: value}


def _insert_new_sqlite(conn: sa.Connection, items: Sequence[NewMessage], digests: list[str], keys: list[str],
                       new_index: list[int], now: dt.datetime) -> tuple[dict[str, int], Originals]:
    """Store ``items[i]`` for each i of ``new_index`` unless its dedup key is stored already: the ids
    stored, by key (the originals of the others are looked up after, as on PostgreSQL). Elsewhere than
    on PostgreSQL one statement per message, through the driver (SQLAlchemy's bind processing of a
    group's rows cost twice the insert itself): it skips a stored key and sets the control id reuse flag,
    so a lone message (one MLLP connection) costs one statement between BEGIN and COMMIT, as a bare
    receiver's does. The new id is the driver's last inserted rowid, read when the statement inserted its
    row (a RETURNING clause cost SQLite about 2 us a message more, for the table it keeps the rows in)."""
    # the times as SQLAlchemy's SQLite DateTime writes them
    at = now.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    stored: dict[str, int] = {}
    try:
        for i, reuse in zip(new_index, _reuse_marks(items, digests, new_index), strict=True):
            m = items[i]
            cursor.execute(_SQLITE_INSERT, (
                m.practice, m.connector, at, digests[i], keys[i], m.sender, m.control_id, m.message_type,
                (m.origin or "")[:255] or None, m.raw, reuse, CONTROL_ID_REUSED))
            if cursor.rowcount == 1:  # 0: the key is stored already (a duplicate), nothing inserted
                stored[keys[i]] = int(cursor.lastrowid)
    except conn.dialect.loaded_dbapi.Error as exc:  # raised as SQLAlchemy raises it: callers handle store failures
        raise sa.exc.DBAPIError.instance(_SQLITE_INSERT, None, exc, conn.dialect.loaded_dbapi.Error) from exc
    finally:
        cursor.close()
    return stored, {}


# the EXISTS reads the messages stored before (this group's earlier ones included) through the
# (practice, control_id) index, and usually finds no row. INSERT ... VALUES, not INSERT ... SELECT: a SELECT
# that reads the table it inserts into is first run into a temporary table (so that it never reads its own
# rows), about 5 us a message more (a quarter of the insert), measured.
# Numbered parameters, bound from a tuple (by name, each value is a dict look-up): ?1 practice, ?2 connector,
# ?3 the time, ?4 content hash, ?5 dedup key, ?6 sender, ?7 control id, ?8 message type, ?9 origin, ?10 raw,
# ?11 reuse (see _reuse_marks), ?12 the flag
_SQLITE_INSERT = (
    "INSERT INTO messages (practice, connector, received_at, content_hash, dedup_key, sender, control_id, "
    "message_type, origin, status, attempts, queued_at, raw, flag) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
    "'received', 0, ?3, ?10, CASE WHEN ?11 = 2 OR (?11 = 1 AND EXISTS (SELECT 1 FROM messages o "
    "WHERE o.practice = ?1 AND o.control_id = ?7 AND o.connector = ?2 "
    "AND o.sender IS ?6 AND o.content_hash <> ?4 AND o.dedup_key IS NOT NULL)) THEN ?12 END) "
    "ON CONFLICT (dedup_key) DO NOTHING")


def _insert_new_postgresql(conn: sa.Connection, items: Sequence[NewMessage], digests: list[str], keys: list[str],
                           new_index: list[int], now: dt.datetime) -> tuple[dict[str, int], Originals]:
    """Store ``items[i]`` for each i of ``new_index`` unless its dedup key is stored already: the ids
    stored, by key (the originals of the others are looked up after). On PostgreSQL in one statement
    of a fixed text (arrays, not one set of parameters per row), so the driver converts and prepares
    it once per connection instead of once per group; a key stored already, also by another process
    at the same moment, is skipped by the unique dedup key. The control id reuse flag is set by the
    same statement (a round trip less for a lone MLLP message): ``reuse`` per row is 0 (no check),
    1 (look for an earlier stored message) or 2 (reuses one earlier in this group, found here)."""
    columns = _pg_columns(items, digests, keys, new_index, now)
    return {key: int(new_id) for new_id, key in conn.exec_driver_sql(_PG_INSERT, columns)}, {}


def _pg_columns(items: Sequence[NewMessage], digests: list[str], keys: list[str], new_index: list[int],
                now: dt.datetime) -> dict[str, Any]:
    """The parameters of ``_PG_INSERT`` for ``items[i]``, i in ``new_index``."""
    columns: dict[str, Any] = {"now": now.astimezone(dt.UTC).replace(tzinfo=None),  # the columns hold naive UTC
                               "flag": CONTROL_ID_REUSED}
    for name in ("practice", "connector", "sender", "control_id", "message_type", "raw"):
        columns[name] = [getattr(items[i], name) for i in new_index]
    columns["origin"] = [(items[i].origin or "")[:255] or None for i in new_index]
    columns["content_hash"] = [digests[i] for i in new_index]
    columns["dedup_key"] = [keys[i] for i in new_index]
    columns["reuse"] = _reuse_marks(items, digests, new_index)
    return columns


def save_alone(conn: sa.Connection, item: NewMessage) -> SavedMessage | None:
    """Store one new message as a transaction of its own (``conn`` not in a transaction). On PostgreSQL in
    one round trip: the insert of ``save_messages`` (control id reuse flag included) runs with the
    driver in autocommit, so the server commits it before it answers, as durably as a COMMIT
    (``synchronous_commit``), and BEGIN and COMMIT cost no round trips of their own; on SQLite by the
    driver's BEGIN IMMEDIATE, that insert and COMMIT (``_save_alone_sqlite``). None, with nothing
    written, when its dedup key is stored already (the caller saves the repeat with ``save_messages``,
    in a transaction) or the store is neither. A lone message with anything else to write in its
    transaction (a refusal, an audit row) is no case for this."""
    if conn.in_transaction():
        return None
    if conn.dialect.name == "sqlite":
        return _save_alone_sqlite(conn, item)
    if conn.dialect.name != "postgresql":
        return None
    digests = [content_hash(item.raw)]
    columns = _pg_columns([item], digests, _keys([item], digests), [0], utcnow())
    driver = conn.connection.driver_connection
    try:
        driver.autocommit = True  # type: ignore[union-attr]
        with conn.begin():  # SQLAlchemy's bookkeeping only: in autocommit the driver sends no BEGIN, no COMMIT
            rows = conn.exec_driver_sql(_PG_INSERT, columns).all()
    finally:
        try:
            driver.autocommit = False  # type: ignore[union-attr]
        except Exception:  # a broken connection: never used again (an autocommit one would split transactions)
            conn.invalidate()
    return SavedMessage(int(rows[0][0]), None) if rows else None


def _save_alone_sqlite(conn: sa.Connection, item: NewMessage) -> SavedMessage | None:
    """``item`` stored as a transaction of its own on SQLite (``conn`` not in a transaction), with the
    statements of ``save_messages`` for a new message: BEGIN IMMEDIATE, its insert, COMMIT, sent through
    the driver (SQLAlchemy's begin and commit with their events cost a lone message more than the insert).
    As durable as any commit (``synchronous`` applies to every COMMIT). None when its dedup key is stored
    already: nothing is written, and ``save_messages`` stores the repeat."""
    driver: Any = conn.connection.driver_connection
    digest = content_hash(item.raw)
    key = store_key(item.practice, item.dedup_key or digest)
    try:
        driver.execute("BEGIN IMMEDIATE")
    except conn.dialect.loaded_dbapi.Error as exc:  # raised as SQLAlchemy raises it, as the insert's are
        raise sa.exc.DBAPIError.instance("BEGIN IMMEDIATE", None, exc, conn.dialect.loaded_dbapi.Error) from exc
    try:
        stored, _ = _insert_new_sqlite(conn, [item], [digest], [key], [0], utcnow())
        try:
            driver.execute("COMMIT")
        except conn.dialect.loaded_dbapi.Error as exc:
            raise sa.exc.DBAPIError.instance("COMMIT", None, exc, conn.dialect.loaded_dbapi.Error) from exc
    except BaseException:
        with contextlib.suppress(Exception):
            if driver.in_transaction:
                driver.execute("ROLLBACK")
        raise
    message_id = stored.get(key)
    return None if message_id is None else SavedMessage(message_id, None)


def _reuse_marks(items: Sequence[NewMessage], digests: list[str], new_index: list[int]) -> list[int]:
    """Per new message: 0 no control id check, 1 check the stored messages, 2 it reuses the sender and
    control id of an earlier message of this group with other content (the statement cannot see those)."""
    seen: dict[tuple[str, str, str | None, str], str] = {}  # (practice, connector, sender, control id) → digest
    marks = []
    for i in new_index:
        m = items[i]
        if not (m.unique_control_id and m.control_id):
            marks.append(0)
            continue
        ident = (m.practice, m.connector, m.sender, m.control_id)
        earlier = seen.setdefault(ident, digests[i])
        marks.append(2 if earlier != digests[i] else 1)
    return marks


# ids follow the order of the group (ORDER BY the array position); the EXISTS reads the messages stored
# before this statement, through the (practice, control_id) index, and usually finds no row
_PG_INSERT = (
    "INSERT INTO messages (practice, connector, received_at, content_hash, dedup_key, sender, control_id, "
    "message_type, origin, status, attempts, queued_at, raw, flag) "
    "SELECT t.practice, t.connector, %(now)s, t.content_hash, t.dedup_key, t.sender, t.control_id, "
    "t.message_type, t.origin, 'received', 0, %(now)s, t.raw, "
    "CASE WHEN t.reuse = 2 OR (t.reuse = 1 AND EXISTS (SELECT 1 FROM messages o WHERE o.practice = t.practice "
    "AND o.control_id = t.control_id AND o.connector = t.connector AND o.sender IS NOT DISTINCT FROM t.sender "
    "AND o.content_hash <> t.content_hash AND o.dedup_key IS NOT NULL)) THEN %(flag)s END "
    "FROM unnest(%(practice)s::text[], %(connector)s::text[], %(content_hash)s::text[], %(dedup_key)s::text[], "
    "%(sender)s::text[], %(control_id)s::text[], %(message_type)s::text[], %(origin)s::text[], "
    "%(raw)s::bytea[], %(reuse)s::int[]) WITH ORDINALITY "
    "AS t(practice, connector, content_hash, dedup_key, sender, control_id, message_type, origin, raw, reuse, n) "
    "ORDER BY t.n ON CONFLICT (dedup_key) DO NOTHING RETURNING id, dedup_key")
_INSERT_NEW = {"postgresql": _insert_new_postgresql}  # any other dialect: _insert_new_sqlite


def _save_duplicates(conn: sa.Connection, items: Sequence[NewMessage], digests: list[str], keys: list[str],
                     now: dt.datetime, stored: dict[str, int], originals: Originals,
                     results: list[SavedMessage | None]) -> None:
    """Each arrival not stored as new (``results`` still None) becomes a ``duplicate`` row of its
    original: one stored in this group (``stored``) or before it (``originals``, looked up here
    for the keys the insert did not look up)."""
    unknown = {key for key, result in zip(keys, results, strict=True)
               if result is None and key not in stored and key not in originals}
    if unknown:
        originals = {**originals, **_originals(conn, unknown)}
    duplicate_rows: list[dict[str, Any]] = []
    for i, (m, digest, key) in enumerate(zip(items, digests, keys, strict=True)):
        if results[i] is None:
            original, error = (stored[key], None) if key in stored else originals[key]
            duplicate_rows.append(_row(m, digest, now, None, "duplicate", None, "duplicate_of", original))
            results[i] = SavedMessage(original, original, error)
    conn.execute(sa.insert(messages), duplicate_rows)


class Loaded(NamedTuple):
    """A stored message as processing reads it."""

    id: int
    practice: str
    connector: str
    raw: bytes | None
    sender: str | None
    control_id: str | None
    message_type: str | None
    origin: str | None
    attempts: int
    received_at: dt.datetime


def load_for_processing(conn: sa.Connection, ids: Iterable[int], *, statuses: tuple[str, ...]) -> list[Any]:
    """The messages ``ids`` still in one of ``statuses``, by id (``Loaded`` rows)."""
    ids = list(ids)
    if not ids:
        return []
    if conn.dialect.name == "sqlite":
        loaded = _load_sqlite(conn, ids, statuses)
        if loaded is not None:
            return loaded
    cols = [messages.c.id, messages.c.practice, messages.c.connector, messages.c.raw, messages.c.sender,
            messages.c.control_id, messages.c.message_type, messages.c.origin, messages.c.attempts,
            messages.c.received_at]
    rows = conn.execute(sa.select(*cols).where(messages.c.id.in_(ids), messages.c.status.in_(statuses))
                        .order_by(messages.c.id)).all()
    return [Loaded(*row) for row in rows]


# one statement text for any batch (the ids and statuses as JSON arrays): prepared once per connection; the
# rows are found by id (``+status``: never through the status index, which would read every waiting message)
_SQLITE_LOAD = ("SELECT id, practice, connector, raw, sender, control_id, message_type, origin, attempts, "
                "received_at FROM messages WHERE id IN (SELECT value FROM json_each(?)) AND +status IN "
                "(SELECT value FROM json_each(?)) ORDER BY id")


def _load_sqlite(conn: sa.Connection, ids: list[int], statuses: tuple[str, ...]) -> list[Loaded] | None:
    """``load_for_processing`` through the driver (SQLAlchemy's processing of the rows cost as much as
    reading them); None when an arrival time is not in the text SQLAlchemy writes (a row edited by
    hand): the caller then reads them through SQLAlchemy, whose reading of such text decides."""
    out = []
    for row in conn.exec_driver_sql(_SQLITE_LOAD, (orjson.dumps(ids).decode(), orjson.dumps(statuses).decode())):
        received = row[9]
        try:
            at = dt.datetime.fromisoformat(received).replace(tzinfo=dt.UTC)
        except (TypeError, ValueError):
            return None
        raw = row[3]
        out.append(Loaded(row[0], row[1], row[2], raw if raw is None or type(raw) is bytes else bytes(raw),
                          row[4], row[5], row[6], row[7], row[8], at))
    return out


def mark_processed(conn: sa.Connection, done: dict[int, int], tallies: dict[int, dict[str, Any]] | None = None) -> None:
    """``done`` maps message id → number of records it yielded; ``tallies`` message id → what else it
    held (``Tally.as_dict``: parts not mapped, invalid elements left out), for the few that hold any."""
    if not done:
        return
    tallies = tallies or {}
    # the driver's own statement, one parameter tuple per message: SQLAlchemy's per-row bind
    # processing cost three times the update itself
    sqlite_ = conn.dialect.name == "sqlite"
    now = utcnow().astimezone(dt.UTC)
    at = now.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite_ else now.replace(tzinfo=None)  # as UTCDateTime binds
    mark = "?" if sqlite_ else "%s"
    conn.exec_driver_sql(
        f"UPDATE messages SET status = 'processed', error = NULL, processed_at = {mark}, record_count = {mark}, "
        f"tally = {mark}, attempts = attempts + 1 WHERE id = {mark}",
        [(at, n, None if (tally := tallies.get(mid)) is None else orjson.dumps(tally).decode(), mid)
         for mid, n in sorted(done.items())])


def processed_tallies(conn: sa.Connection, ids: Sequence[int]) -> list[tuple[int, str | None, int | None]]:
    """(id, tally JSON, record count) of the given messages that are processed."""
    out: list[tuple[int, str | None, int | None]] = []
    ordered = sorted(ids)
    for start in range(0, len(ordered), 500):
        out.extend(conn.execute(sa.select(messages.c.id, messages.c.tally, messages.c.record_count)
                                .where(messages.c.id.in_(ordered[start:start + 500]),
                                       messages.c.status == "processed")).all())
    return out


def errors_of(conn: sa.Connection, ids: Sequence[int]) -> dict[int, str | None]:
    """id → reason of those of the given messages that are in ``error``."""
    out: dict[int, str | None] = {}
    ordered = sorted(ids)
    for start in range(0, len(ordered), 500):
        out.update((row.id, row.error) for row in conn.execute(
            sa.select(messages.c.id, messages.c.error)
            .where(messages.c.id.in_(ordered[start:start + 500]), messages.c.status == "error")))
    return out


def mark_error(conn: sa.Connection, failed: dict[int, str]) -> None:
    """``failed`` maps message id → the reason a person can act on (no patient data)."""
    if not failed:
        return
    now = utcnow()
    stmt = (sa.update(messages).where(messages.c.id == sa.bindparam("mid"))
            .values(status="error", error=sa.bindparam("reason"), processed_at=now,
                    attempts=messages.c.attempts + 1))
    conn.execute(stmt, [{"mid": mid, "reason": reason[:2000]} for mid, reason in failed.items()])


def note_attempt(conn: sa.Connection, ids: Sequence[int], reason: str) -> None:
    """A transient failure: count the attempt, keep the message ``received`` for the retry."""
    conn.execute(sa.update(messages).where(messages.c.id.in_(list(ids)), messages.c.status == "received")
                 .values(attempts=messages.c.attempts + 1, error=reason[:2000]))


def list_messages(conn: sa.Connection, *, limit: int = 100, offset: int = 0, **search: Any) -> list[dict[str, Any]]:
    """Messages a search finds (``practice``, ``status``, ``since``, ``until``, ``message_type``, ``control_id``,
    ``mrn``: see ``_searched``), newest first, without their bytes."""
    cols = [c for c in messages.c if c.name not in ("raw", "dedup_key")]
    q = _searched(sa.select(*cols), **search).order_by(messages.c.id.desc()).limit(limit).offset(offset)
    rows = [dict(r._mapping) for r in conn.execute(q)]
    for row in rows:
        if row.get("tally"):
            row["tally"] = orjson.loads(row["tally"])
    return rows


def ids_for_reprocess(conn: sa.Connection, *, practice: str | None, status: str | None,
                      ids: Sequence[int] = ()) -> list[int]:
    """Messages to replay: given ids, or every message of a status (default: error and processed)."""
    q = sa.select(messages.c.id).where(messages.c.raw.is_not(None)).order_by(messages.c.id)
    if ids:  # a resolved message stays as it is (see ``resolve``), even named
        q = q.where(messages.c.id.in_(list(ids)), messages.c.status != "resolved")
    elif status:
        q = q.where(messages.c.status == status)
    else:
        q = q.where(messages.c.status.in_(("error", "processed", "received")))
    if practice:
        q = q.where(messages.c.practice == practice)
    return list(conn.execute(q).scalars())


def altered(conn: sa.Connection, ids: Sequence[int]) -> list[int]:
    """The messages among ``ids`` whose stored bytes no longer hash to the ``content_hash`` taken when they
    arrived (a row changed outside the hub: by hand, a faulty restore, an attacker)."""
    found: list[int] = []
    for start in range(0, len(ids), 500):
        rows = conn.execute(sa.select(messages.c.id, messages.c.raw, messages.c.content_hash)
                            .where(messages.c.id.in_(list(ids[start:start + 500])), messages.c.raw.is_not(None)))
        found += [r.id for r in rows if content_hash(_bytes(r.raw)) != r.content_hash]
    return sorted(found)


def _bytes(raw: Any) -> bytes:
    # a row edited by hand may hold text where the hub wrote bytes (SQLite keeps what it is given)
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else bytes(raw)


def resolve(conn: sa.Connection, ids: Sequence[int]) -> list[tuple[int, str]]:
    """Mark messages in error ``resolved`` (superseded, or fixed at the source): reprocessing leaves them.
    The (id, practice) of those marked; an id not in error is left as it is."""
    found = [(r.id, r.practice) for r in conn.execute(
        sa.select(messages.c.id, messages.c.practice)
        .where(messages.c.id.in_(list(ids)), messages.c.status == "error").order_by(messages.c.id))]
    if found:
        conn.execute(sa.update(messages).where(messages.c.id.in_([i for i, _ in found]))
                     .values(status="resolved"))
    return found


def requeue(conn: sa.Connection, ids: Sequence[int]) -> None:
    """Put messages back to ``received`` so the dispatcher processes them again."""
    for start in range(0, len(ids), 500):
        chunk = list(ids[start:start + 500])
        conn.execute(sa.update(messages).where(messages.c.id.in_(chunk), messages.c.raw.is_not(None))
                     .values(status="received", queued_at=utcnow()))


# ``queued_at`` of a message whose hand-off to the queue failed (Redis down): the sweeper takes it at once
UNQUEUED = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def mark_unqueued(conn: sa.Connection, ids: Sequence[int]) -> None:
    """The messages could not be handed to the queue: the next sweep dispatches them again."""
    for start in range(0, len(ids), 500):
        conn.execute(sa.update(messages).where(messages.c.id.in_(list(ids[start:start + 500])),
                                               messages.c.status == "received").values(queued_at=UNQUEUED))


def claim_stale(conn: sa.Connection, older_than: dt.timedelta | None, limit: int = 5_000) -> list[int]:
    """Take the messages left ``received`` since before ``older_than`` ago (``None``: only those whose
    hand-off failed), stamping them handed off now, so that two sweepers never take the same one
    and a message is taken again only after another ``older_than``."""
    cutoff = UNQUEUED if older_than is None else utcnow() - older_than
    ids = list(conn.execute(sa.select(messages.c.id)
                            .where(messages.c.status == "received", messages.c.queued_at <= cutoff)
                            .order_by(messages.c.id).limit(limit)).scalars())
    if not ids:
        return []
    now = utcnow()
    claimed: list[int] = []
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        # the status and stamp are checked again by the update itself: a concurrent sweeper's claim wins once
        claimed.extend(conn.execute(
            sa.update(messages).where(messages.c.id.in_(chunk), messages.c.status == "received",
                                      messages.c.queued_at <= cutoff)
            .values(queued_at=now).returning(messages.c.id)).scalars())
    return sorted(claimed)


def claim(conn: sa.Connection, ids: Sequence[int]) -> list[int]:
    """Of ``ids`` (the messages of a job whose worker died), take those still ``received``, stamping
    them handed off now; the ones processed before the worker died stay as they are."""
    now = utcnow()
    claimed: list[int] = []
    for start in range(0, len(ids), 500):
        chunk = list(ids[start:start + 500])
        claimed.extend(conn.execute(
            sa.update(messages).where(messages.c.id.in_(chunk), messages.c.status == "received")
            .values(queued_at=now).returning(messages.c.id)).scalars())
    return sorted(claimed)


def counts_by_status(conn: sa.Connection, practice: str | None = None) -> dict[str, int]:
    q = sa.select(messages.c.status, sa.func.count()).group_by(messages.c.status)
    if practice:
        q = q.where(messages.c.practice == practice)
    return {s: n for s, n in conn.execute(q)}


# ------------------------------------------------------------------ feed health (hub.operations)
def feed_activity(conn: sa.Connection, *, now: dt.datetime) -> list[dict[str, Any]]:
    """Per practice and connector: the last arrival and processing, the arrivals of the last hour and
    day by their status now (``received`` counts every arrival), and the queue (messages still
    ``received``: how many, since when). Arrivals after ``now`` are left out."""
    m = messages.c
    hour, day = now - dt.timedelta(hours=1), now - dt.timedelta(days=1)

    def count(*conditions: Any) -> Any:
        return sa.func.sum(sa.case((sa.and_(*conditions), 1), else_=0))

    columns = [m.practice, m.connector, sa.func.max(m.received_at).label("last_received"),
               sa.func.max(m.processed_at).label("last_processed"),
               count(m.status == "received").label("queue"),
               sa.func.min(sa.case((m.status == "received", m.received_at))).label("oldest_waiting")]
    for name, since in (("hour", hour), ("day", day)):
        columns.append(count(m.received_at > since).label(f"{name}_received"))
        for status in ("processed", "duplicate", "error"):
            columns.append(count(m.received_at > since, m.status == status).label(f"{name}_{status}"))
    rows = conn.execute(sa.select(*columns).where(m.received_at <= now).group_by(m.practice, m.connector)
                        .order_by(m.practice, m.connector))
    out = []
    for row in rows:
        item = dict(row._mapping)
        for key in ("last_received", "last_processed", "oldest_waiting"):  # an aggregate loses the column type
            item[key] = _utc(item[key])
        for key, value in item.items():
            if key.startswith(("hour_", "day_")) or key == "queue":
                item[key] = int(value or 0)
        out.append(item)
    return out


def _utc(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def last_arrival(conn: sa.Connection, practice: str, *, until: dt.datetime,
                 connector: str | None = None) -> dt.datetime | None:
    """The latest arrival (a repeat counts: the feed is alive) of a practice, up to ``until``."""
    q = sa.select(sa.func.max(messages.c.received_at)).where(messages.c.practice == practice,
                                                             messages.c.received_at <= until)
    if connector:
        q = q.where(messages.c.connector == connector)
    return _utc(conn.execute(q).scalar())


def first_arrival(conn: sa.Connection, practice: str) -> dt.datetime | None:
    return _utc(conn.execute(sa.select(sa.func.min(messages.c.received_at))
                             .where(messages.c.practice == practice)).scalar())


def recent_outcomes(conn: sa.Connection, practice: str, last: int, *, until: dt.datetime) -> list[str]:
    """The statuses of the practice's ``last`` latest messages that were processed (or failed) by now,
    newest first; repeats and messages still waiting are not outcomes."""
    # newest by arrival, along ix_messages_practice_received (by id, the planner takes the status index and
    # sorts every processed message of the practice)
    return list(conn.execute(
        sa.select(messages.c.status)
        .where(messages.c.practice == practice, messages.c.received_at <= until,
               messages.c.status.in_(("processed", "error", "resolved")))
        .order_by(messages.c.received_at.desc(), messages.c.id.desc()).limit(last)).scalars())


def arrivals_by_period(conn: sa.Connection, practice: str, bounds: Sequence[dt.datetime]) -> list[int]:
    """New messages (not repeats) of a practice received in each period [bounds[i], bounds[i + 1]), in one
    range scan of ix_messages_practice_received (``bounds`` ascending)."""
    if len(bounds) < 2:
        return []
    received = messages.c.received_at
    sums = [sa.func.sum(sa.case((sa.and_(received >= start, received < end), 1), else_=0))
            for start, end in zip(bounds, bounds[1:], strict=False)]
    row = conn.execute(sa.select(*sums).where(messages.c.practice == practice, received >= bounds[0],
                                              received < bounds[-1], messages.c.status != "duplicate")).one()
    return [int(value or 0) for value in row]


def waiting(conn: sa.Connection, practice: str) -> tuple[int, dt.datetime | None]:
    """How many of a practice's messages are still ``received`` (stored, not processed), and the oldest's
    arrival (through ix_messages_status_practice)."""
    row = conn.execute(sa.select(sa.func.count(), sa.func.min(messages.c.received_at))
                       .where(messages.c.status == "received", messages.c.practice == practice)).one()
    return int(row[0] or 0), _utc(row[1])


def _searched(q: sa.Select[Any], *, practice: str | None = None, status: str | None = None,
              message_type: str | None = None, control_id: str | None = None, since: dt.datetime | None = None,
              until: dt.datetime | None = None, mrn: str | None = None) -> sa.Select[Any]:
    """A message query narrowed to a search: ``since``/``until`` bound ``received_at`` (until exclusive);
    ``message_type`` matches exactly, or its start when it ends in ``*`` (``SIU*``); ``mrn`` keeps the
    messages that gave that patient record or a record of that patient (by lineage, within ``practice``
    when given: a message in error gave none)."""
    if practice:
        q = q.where(messages.c.practice == practice)
    if status:
        q = q.where(messages.c.status == status)
    if message_type:
        q = q.where(messages.c.message_type.startswith(message_type[:-1], autoescape=True)
                    if message_type.endswith("*") else messages.c.message_type == message_type)
    if control_id:
        q = q.where(messages.c.control_id == control_id)
    if since:
        q = q.where(messages.c.received_at >= since)
    if until:
        q = q.where(messages.c.received_at < until)
    if mrn:
        q = q.where(messages.c.id.in_(_messages_of_patient(mrn, practice)))
    return q


def _messages_of_patient(mrn: str, practice: str | None) -> sa.CompoundSelect[Any]:
    """The ids of the messages that gave the patient record ``mrn`` or a record of that patient (an
    appointment, a charge, ...), by lineage."""
    gave = sa.select(lineage.c.message_id).where(lineage.c.kind == "patient", lineage.c.source_id == mrn)
    parts = [gave.where(lineage.c.practice == practice) if practice else gave]
    for kind, table in RECORD_TABLES.items():
        if "patient_source_id" not in table.c:
            continue
        joined = lineage.join(table, sa.and_(table.c.practice == lineage.c.practice,
                                             table.c.source_id == lineage.c.source_id))
        of = sa.select(lineage.c.message_id).select_from(joined).where(
            lineage.c.kind == kind, table.c.patient_source_id == mrn)
        parts.append(of.where(table.c.practice == practice) if practice else of)
    return sa.union(*parts)


def search_ids(conn: sa.Connection, **search: Any) -> list[int]:
    """The ids of the messages a search finds that hold content to replay."""
    q = _searched(sa.select(messages.c.id).where(messages.c.raw.is_not(None)), **search)
    return list(conn.execute(q.order_by(messages.c.id)).scalars())


ERROR_QUEUE_MAX = 50_000  # messages in error read for grouping at most (the newest)


def reason_pattern(reason: str | None, origin: str | None) -> str:
    """What errors of one kind share: the reason without the file or peer it names first (the message's own
    ``origin``) and with every number as ``#`` (a line, a column, a count)."""
    text = reason or ""
    if origin and text.startswith(origin + ", "):
        text = text[len(origin) + 2:]
    return re.sub(r"\d+", "#", text)


def _errors(conn: sa.Connection, practice: str | None) -> list[Any]:
    q = (sa.select(messages.c.id, messages.c.practice, messages.c.origin, messages.c.error, messages.c.received_at,
                   messages.c.raw.is_not(None).label("replayable"))
         .where(messages.c.status == "error").order_by(messages.c.id.desc()).limit(ERROR_QUEUE_MAX))
    return list(conn.execute(q.where(messages.c.practice == practice) if practice else q))


def error_groups(conn: sa.Connection, practice: str | None = None) -> list[dict[str, Any]]:
    """The error queue by practice and reason pattern (``reason_pattern``): how many, first and last seen, the
    latest message's id and its reason as written."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for row in _errors(conn, practice):
        pattern = reason_pattern(row.error, row.origin)
        group = groups.get((row.practice, pattern))
        if group is None:  # rows come newest first: the first of a group is its latest
            groups[(row.practice, pattern)] = {"practice": row.practice, "pattern": pattern, "reason": row.error,
                                               "latest": row.id, "count": 1, "first": row.received_at,
                                               "last": row.received_at}
        else:
            group["count"] += 1
            group["first"] = min(group["first"], row.received_at)
            group["last"] = max(group["last"], row.received_at)
    return sorted(groups.values(), key=lambda g: (-g["count"], g["practice"], g["pattern"]))


def error_ids(conn: sa.Connection, *, practice: str, pattern: str) -> list[int]:
    """The messages of a practice in error with this reason pattern that hold content to replay."""
    return sorted(row.id for row in _errors(conn, practice)
                  if row.replayable and reason_pattern(row.error, row.origin) == pattern)


def daily_arrivals(conn: sa.Connection, since: dt.datetime) -> dict[tuple[str, str], dict[str, int]]:
    """Arrivals per (practice, connector) and UTC day (``YYYY-MM-DD``) since ``since``."""
    day = sa.func.substr(sa.cast(messages.c.received_at, sa.String), 1, 10).label("day")
    q = (sa.select(messages.c.practice, messages.c.connector, day, sa.func.count())
         .where(messages.c.received_at >= since).group_by(messages.c.practice, messages.c.connector, day))
    out: dict[tuple[str, str], dict[str, int]] = {}
    for practice, connector, on, count in conn.execute(q):
        out.setdefault((practice, connector), {})[on] = count
    return out
