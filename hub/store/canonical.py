"""The canonical store: idempotent, batched upserts on ``(practice, kind, source_id)``.

Rules, chosen so that replaying any message any number of times, in any order,
leaves the same store:
- a field a message does not carry (None) keeps the value already stored, so a
  record seen in several feeds is completed, not erased, by each of them;
- a row remembers the newest message that wrote it; an older message replayed
  later does not overwrite it (a reprocess of the same message does);
- every (record, message) pair is kept in ``lineage``, so any figure can be traced
  back to the messages behind it;
- a patient merge re-points the prior patient's records to the surviving one,
  now and for records of the prior id that arrive later; the merge row is kept.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from hub.model import to_json_ready
from hub.model.kinds import PATIENT_REFERENCES
from hub.model.tables import RECORD_TABLES, lineage

_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def _insert(conn: sa.Connection, table: sa.Table) -> Any:
    try:
        return _INSERTS[conn.dialect.name](table)
    except KeyError:
        raise NotImplementedError(f"no upsert for the {conn.dialect.name} dialect") from None


def _storable(value: Any) -> Any:
    # date-times of the model are stored as ISO text with their offset (see tables.py); JSON columns
    # (adjustments, identifiers) hold decimal strings, as the validated records carry Decimals
    if isinstance(value, list | dict):
        return to_json_ready(value)
    return value.isoformat() if isinstance(value, dt.datetime) else value


def upsert_records(conn: sa.Connection, items: Sequence[tuple[dict[str, Any], int | None]]) -> int:
    """Write validated records (each with the id of its message) in the caller's transaction."""
    if not items:
        return 0
    now = dt.datetime.now(dt.UTC)
    merges = [(r, m) for r, m in items if r["kind"] == "patient_merge"]
    items = _apply_known_merges(conn, items)
    by_kind: dict[str, dict[tuple[str, str], dict[str, Any]]] = defaultdict(dict)
    lineage_rows: dict[tuple[str, str, str, int], None] = {}
    for record, message_id in items:
        kind = record["kind"]
        row = {k: _storable(v) for k, v in record.items() if k != "kind"}
        row["message_id"] = message_id
        row["updated_at"] = now
        key = (record["practice"], record["source_id"])
        previous = by_kind[kind].get(key)
        if previous is not None:  # the same record twice in one batch: fold, newest message wins
            merged = dict(previous)
            merged.update({k: v for k, v in row.items() if v is not None})
            row = merged
        by_kind[kind][key] = row
        if message_id is not None:
            lineage_rows[(kind, record["practice"], record["source_id"], message_id)] = None
    for kind, rows in by_kind.items():
        _upsert_kind(conn, kind, list(rows.values()))
    if lineage_rows:
        stmt = _insert(conn, lineage).on_conflict_do_nothing()
        conn.execute(stmt, [dict(zip(("kind", "practice", "source_id", "message_id"), k, strict=True))
                            for k in lineage_rows])
    for record, _ in merges:
        apply_patient_merge(conn, record["practice"], record["prior_source_id"], record["surviving_source_id"])
    return len(items)


def _upsert_kind(conn: sa.Connection, kind: str, rows: list[dict[str, Any]]) -> None:
    table = RECORD_TABLES[kind]
    columns = [c.name for c in table.c if c.name not in ("id", "practice", "source_id")]
    # every row of an executemany must name the same columns
    full = [{c.name: row.get(c.name) for c in table.c if c.name != "id"} for row in rows]
    stmt = _insert(conn, table)
    excluded = stmt.excluded
    keep = {c: sa.func.coalesce(excluded[c], table.c[c]) for c in columns if c not in ("message_id", "updated_at")}
    keep["message_id"] = sa.func.coalesce(excluded.message_id, table.c.message_id)
    keep["updated_at"] = excluded.updated_at
    newer = sa.or_(table.c.message_id.is_(None), excluded.message_id.is_(None),
                   table.c.message_id <= excluded.message_id)
    stmt = stmt.on_conflict_do_update(index_elements=["practice", "source_id"], set_=keep, where=newer)
    conn.execute(stmt, full)


def _merge_map(conn: sa.Connection, practice: str, ids: set[str]) -> dict[str, str]:
    merges = RECORD_TABLES["patient_merge"]
    mapping: dict[str, str] = {}
    frontier = set(ids)
    for _ in range(10):  # merge chains are short; the bound guards against a cycle in bad data
        if not frontier:
            break
        rows = conn.execute(sa.select(merges.c.prior_source_id, merges.c.surviving_source_id)
                            .where(merges.c.practice == practice, merges.c.prior_source_id.in_(frontier))).all()
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


def _apply_known_merges(conn: sa.Connection, items: Sequence[tuple[dict[str, Any], int | None]]
                        ) -> list[tuple[dict[str, Any], int | None]]:
    wanted: dict[str, set[str]] = defaultdict(set)
    for record, _ in items:
        ref = PATIENT_REFERENCES.get(record["kind"])
        if ref and record.get(ref):
            wanted[record["practice"]].add(record[ref])
    maps = {p: _merge_map(conn, p, ids) for p, ids in wanted.items()}
    if not any(maps.values()):
        return list(items)
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
