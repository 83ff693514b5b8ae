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

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from hub.connector import DEDUP_KEY_MAX, content_key
from hub.model.tables import messages
from hub.store.engine import fetch_by_keys

STATUSES = ("received", "processed", "error", "duplicate", "resolved")
CONTROL_ID_REUSED = "control-id-reused"  # the flag of a message reusing a stored message's control id


@dataclass(frozen=True)
class NewMessage:
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


@dataclass(frozen=True)
class SavedMessage:
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


def save_messages(conn: sa.Connection, items: Sequence[NewMessage]) -> list[SavedMessage]:
    """Store a group of arrivals in the caller's transaction (one commit for the group).

    The first arrival of each dedup key not stored yet becomes a new message (``received``);
    every other arrival, a ``duplicate`` row of its original. Only the insert of the new messages
    is the dialect's own (``_INSERT_NEW``); the rest is the same on every store."""
    if not items:
        return []
    now = utcnow()
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
    _flag_reused_control_ids(conn, items, digests, new)
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
    stored, by key, and the originals found. Elsewhere than on PostgreSQL the keys are looked up
    first (the writer's transaction, BEGIN IMMEDIATE, is the only one writing meanwhile), the new
    messages inserted in one executemany, then their ids read by key (RETURNING in parameter order
    makes SQLAlchemy run one INSERT per row on SQLite)."""
    originals = _originals(conn, [keys[i] for i in new_index])
    rows = [_row(items[i], digests[i], now, keys[i], "received", items[i].raw, "queued_at", now)
            for i in new_index if keys[i] not in originals]
    if not rows:
        return {}, originals
    conn.execute(sa.insert(messages), rows)
    stored = fetch_by_keys(conn, _IDS_BY_KEY, [row["dedup_key"] for row in rows])
    return {key: int(message_id) for key, message_id in stored}, originals


_IDS_BY_KEY = "SELECT dedup_key, id FROM messages WHERE dedup_key IN :keys"


def _insert_new_postgresql(conn: sa.Connection, items: Sequence[NewMessage], digests: list[str], keys: list[str],
                           new_index: list[int], now: dt.datetime) -> tuple[dict[str, int], Originals]:
    """Store ``items[i]`` for each i of ``new_index`` unless its dedup key is stored already: the ids
    stored, by key (the originals of the others are looked up after). On PostgreSQL in one statement
    of a fixed text (arrays, not one set of parameters per row), so the driver converts and prepares
    it once per connection instead of once per group; a key stored already, also by another process
    at the same moment, is skipped by the unique dedup key."""
    columns: dict[str, Any] = {"now": now.astimezone(dt.UTC).replace(tzinfo=None)}  # the columns hold naive UTC
    for name in ("practice", "connector", "sender", "control_id", "message_type", "raw"):
        columns[name] = [getattr(items[i], name) for i in new_index]
    columns["origin"] = [(items[i].origin or "")[:255] or None for i in new_index]
    columns["content_hash"] = [digests[i] for i in new_index]
    columns["dedup_key"] = [keys[i] for i in new_index]
    return {key: int(new_id) for new_id, key in conn.exec_driver_sql(_PG_INSERT, columns)}, {}


# ids follow the order of the group (ORDER BY the array position)
_PG_INSERT = (
    "INSERT INTO messages (practice, connector, received_at, content_hash, dedup_key, sender, control_id, "
    "message_type, origin, status, attempts, queued_at, raw) "
    "SELECT t.practice, t.connector, %(now)s, t.content_hash, t.dedup_key, t.sender, t.control_id, "
    "t.message_type, t.origin, 'received', 0, %(now)s, t.raw "
    "FROM unnest(%(practice)s::text[], %(connector)s::text[], %(content_hash)s::text[], %(dedup_key)s::text[], "
    "%(sender)s::text[], %(control_id)s::text[], %(message_type)s::text[], %(origin)s::text[], "
    "%(raw)s::bytea[]) WITH ORDINALITY "
    "AS t(practice, connector, content_hash, dedup_key, sender, control_id, message_type, origin, raw, n) "
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


# the new messages (ids) that repeat an earlier message's sender and control id with other content;
# through the (practice, control_id) index, and the answer is usually no row at all
_REUSE_LOOKUP = ("SELECT DISTINCT n.id FROM messages n JOIN messages o ON o.practice = n.practice "
                 "AND o.control_id = n.control_id AND o.connector = n.connector "
                 "AND (o.sender = n.sender OR (o.sender IS NULL AND n.sender IS NULL)) "
                 "AND o.id < n.id AND o.content_hash <> n.content_hash AND o.dedup_key IS NOT NULL "
                 "WHERE n.id IN :keys")


def _flag_reused_control_ids(conn: sa.Connection, items: Sequence[NewMessage], digests: list[str],
                             stored: dict[int, int]) -> None:
    """Flag each message just stored (``stored``: index in ``items`` → id) that reuses the sender and
    control id of an earlier message (stored before, or earlier in this group) with other content.
    Called after the insert, in the same transaction, so the look-up sees the group's own rows."""
    candidates = [new_id for i, new_id in stored.items() if items[i].unique_control_id and items[i].control_id]
    if not candidates:
        return
    flagged = [int(row[0]) for row in fetch_by_keys(conn, _REUSE_LOOKUP, candidates)]
    if flagged:
        conn.execute(sa.update(messages).where(messages.c.id.in_(flagged)).values(flag=CONTROL_ID_REUSED))


def load_for_processing(conn: sa.Connection, ids: Iterable[int], *, statuses: tuple[str, ...]) -> list[Any]:
    ids = list(ids)
    if not ids:
        return []
    cols = [messages.c.id, messages.c.practice, messages.c.connector, messages.c.raw, messages.c.sender,
            messages.c.control_id, messages.c.message_type, messages.c.origin, messages.c.attempts,
            messages.c.received_at]
    rows = conn.execute(sa.select(*cols).where(messages.c.id.in_(ids), messages.c.status.in_(statuses))
                        .order_by(messages.c.id)).all()
    return list(rows)


def mark_processed(conn: sa.Connection, done: dict[int, int], tallies: dict[int, dict[str, Any]] | None = None) -> None:
    """``done`` maps message id → number of records it yielded; ``tallies`` message id → what else it
    held (``Tally.as_dict``: parts not mapped, invalid elements left out), for the few that hold any."""
    if not done:
        return
    now = utcnow()
    tallies = tallies or {}
    by_count: dict[int, list[int]] = {}
    for mid, n in done.items():
        if mid not in tallies:
            by_count.setdefault(n, []).append(mid)
    # one statement per record count (a batch has a handful), not one parameter set per message
    for n, ids in sorted(by_count.items()):
        for start in range(0, len(ids), 500):
            conn.execute(sa.update(messages).where(messages.c.id.in_(sorted(ids[start:start + 500])))
                         .values(status="processed", error=None, processed_at=now, record_count=n, tally=None,
                                 attempts=messages.c.attempts + 1))
    if tallies:
        stmt = (sa.update(messages).where(messages.c.id == sa.bindparam("mid"))
                .values(status="processed", error=None, processed_at=now, record_count=sa.bindparam("n"),
                        tally=sa.bindparam("tally"), attempts=messages.c.attempts + 1))
        conn.execute(stmt, [{"mid": mid, "n": done[mid], "tally": orjson.dumps(t).decode()}
                            for mid, t in sorted(tallies.items()) if mid in done])


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


def list_messages(conn: sa.Connection, *, practice: str | None = None, status: str | None = None,
                  limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    cols = [c for c in messages.c if c.name not in ("raw", "dedup_key")]
    q = sa.select(*cols).order_by(messages.c.id.desc()).limit(limit).offset(offset)
    if practice:
        q = q.where(messages.c.practice == practice)
    if status:
        q = q.where(messages.c.status == status)
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


def counts_by_status(conn: sa.Connection, practice: str | None = None) -> dict[str, int]:
    q = sa.select(messages.c.status, sa.func.count()).group_by(messages.c.status)
    if practice:
        q = q.where(messages.c.practice == practice)
    return {s: n for s, n in conn.execute(q)}
