"""What operators do with the index: the review queue, manual links and splits, explain, export.

A decision is kept on the pair (``accepted``: a manual link; ``rejected``: never one person) with who
made it and when, and the records are clustered again at once; no later run overwrites it. A split
takes a record out of its cluster: every pair that holds it there is rejected, and only a manual
link joins it to another record from then on. Nothing here returns demographics: pairs show
which fields agreed, and how, never the values.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from hub.errors import HubError, NotFound
from hub.identity.cluster import Key
from hub.identity.mpi import recluster
from hub.model.tables import RECORD_TABLES, identity_links, identity_pairs, identity_runs
from hub.store.engine import writer

EXPORT_COLUMNS = ("practice", "source_id", "enterprise_id", "method", "weight", "split", "linked_at")


class IdentityError(HubError):
    """A decision the index cannot take (a record linked to itself, a split of a record not linked yet)."""


def _pair_dict(row: Any) -> dict[str, Any]:
    return {"id": row.id, "a": {"practice": row.practice_a, "source_id": row.source_a},
            "b": {"practice": row.practice_b, "source_id": row.source_b}, "rule": row.rule,
            "weight": row.weight, "probability": row.probability, "agreement": row.agreement or {},
            "status": row.status, "decided_by": row.decided_by,
            "decided_at": row.decided_at.isoformat() if row.decided_at else None}


def review_queue(conn: sa.Connection, *, limit: int = 50, offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
    """The pairs waiting for a decision, the most likely first: (how many in all, this page)."""
    t = identity_pairs
    total = conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.status == "review")).scalar_one()
    rows = conn.execute(sa.select(t).where(t.c.status == "review")
                        .order_by(t.c.probability.desc(), t.c.id).limit(limit).offset(offset))
    return int(total), [_pair_dict(r) for r in rows]


def decide(engine: sa.Engine, pair_id: int, *, accept: bool, by: str, plugins: Any = None) -> dict[str, Any]:
    """Accept (link) or reject (keep apart) a pair; the records are clustered again."""
    t = identity_pairs
    with writer(engine).begin() as conn:
        row = conn.execute(sa.select(t).where(t.c.id == pair_id)).first()
        if row is None:
            raise NotFound(f"no identity pair {pair_id}: see hub identity review")
        conn.execute(sa.update(t).where(t.c.id == pair_id).values(
            status="accepted" if accept else "rejected", decided_by=by[:64], decided_at=_now()))
    moved = recluster(engine, {(row.practice_a, row.source_a), (row.practice_b, row.source_b)}, plugins)
    return {"pair": pair_id, "status": "accepted" if accept else "rejected", "moved": len(moved)}


def link(engine: sa.Engine, a: Key, b: Key, *, by: str, plugins: Any = None) -> dict[str, Any]:
    """An operator's link of two records (any practices): accepted, as a decision on their pair."""
    if a == b:
        raise IdentityError("a record cannot be linked to itself")
    first, second = sorted((a, b))
    with writer(engine).begin() as conn:
        _require_patients(conn, first, second)
        _decide_pair(conn, first, second, "accepted", by)
        for key in (first, second):  # a manual link undoes a split of either record
            conn.execute(sa.update(identity_links).where(identity_links.c.practice == key[0],
                                                         identity_links.c.source_id == key[1]).values(split=False))
    moved = recluster(engine, {first, second}, plugins)
    return {"linked": [_key_dict(first), _key_dict(second)], "moved": len(moved)}


def split(engine: sa.Engine, key: Key, *, by: str, plugins: Any = None) -> dict[str, Any]:
    """Take a record out of its cluster: its pairs that link it are rejected, and it stays apart
    until an operator links it."""
    t = identity_pairs
    with writer(engine).begin() as conn:
        _require_patients(conn, key)
        link_row = conn.execute(sa.select(identity_links).where(identity_links.c.practice == key[0],
                                                                identity_links.c.source_id == key[1])).first()
        if link_row is None:
            raise IdentityError(f"patient {key[0]}/{key[1]} is not linked yet: run hub identity run first")
        touching = sa.or_(sa.and_(t.c.practice_a == key[0], t.c.source_a == key[1]),
                          sa.and_(t.c.practice_b == key[0], t.c.source_b == key[1]))
        partners = {(r.practice, r.source_id) for r in conn.execute(  # its cluster until now
            sa.select(identity_links).where(identity_links.c.enterprise_id == link_row.enterprise_id))}
        conn.execute(sa.update(t).where(touching, t.c.status.in_(("link", "accepted", "review")))
                     .values(status="rejected", decided_by=by[:64], decided_at=_now()))
        conn.execute(sa.update(identity_links).where(identity_links.c.practice == key[0],
                                                     identity_links.c.source_id == key[1]).values(split=True))
    moved = recluster(engine, {key} | partners, plugins)
    return {"split": _key_dict(key), "moved": len(moved)}


def explain(conn: sa.Connection, key: Key) -> dict[str, Any]:
    """How a record is linked: its enterprise id and method, the other records under that id, and
    every pair that holds it, with the fields that agreed and the weight."""
    _require_patients(conn, key)
    row = conn.execute(sa.select(identity_links).where(identity_links.c.practice == key[0],
                                                       identity_links.c.source_id == key[1])).first()
    t = identity_pairs
    touching = sa.or_(sa.and_(t.c.practice_a == key[0], t.c.source_a == key[1]),
                      sa.and_(t.c.practice_b == key[0], t.c.source_b == key[1]))
    pairs = [_pair_dict(r) for r in conn.execute(sa.select(t).where(touching).order_by(t.c.id))]
    out: dict[str, Any] = {**_key_dict(key), "linked": row is not None, "pairs": pairs}
    if row is not None:
        members = conn.execute(sa.select(identity_links).where(identity_links.c.enterprise_id == row.enterprise_id)
                               .order_by(identity_links.c.practice, identity_links.c.source_id))
        out.update(enterprise_id=row.enterprise_id, method=row.method, weight=row.weight, split=row.split,
                   linked_at=row.linked_at.isoformat(),
                   cluster=[{**_key_dict((m.practice, m.source_id)), "method": m.method} for m in members])
    return out


def export(conn: sa.Connection) -> Iterator[dict[str, Any]]:
    """Every patient record with its enterprise id and how it was linked (unlinked ones too)."""
    patients = RECORD_TABLES["patient"]
    q = (sa.select(patients.c.practice, patients.c.source_id, identity_links.c.enterprise_id, identity_links.c.method,
                   identity_links.c.weight, identity_links.c.split, identity_links.c.linked_at)
         .select_from(patients.outerjoin(identity_links, sa.and_(identity_links.c.practice == patients.c.practice,
                                                                 identity_links.c.source_id == patients.c.source_id)))
         .order_by(patients.c.practice, patients.c.source_id))
    for r in conn.execution_options(yield_per=5000).execute(q):
        yield {"practice": r.practice, "source_id": r.source_id, "enterprise_id": r.enterprise_id,
               "method": r.method or "not linked yet", "weight": r.weight, "split": bool(r.split),
               "linked_at": r.linked_at.isoformat() if r.linked_at else None}


def export_lines(conn: sa.Connection, fmt: str, counted: list[int] | None = None) -> Iterator[str]:
    """``export`` as CSV or a JSON array, a line at a time (to stream); ``counted`` gets the rows written."""
    count = 0
    if fmt == "csv":
        buffer = io.StringIO()
        w = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
        w.writeheader()
        for row in export(conn):
            w.writerow(row)
            count += 1
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()
    else:
        yield "["
        for row in export(conn):
            yield ("," if count else "") + "\n" + json.dumps(row)
            count += 1
        yield "\n]\n"
    if counted is not None:
        counted.append(count)


def last_runs(conn: sa.Connection, limit: int = 5) -> list[dict[str, Any]]:
    rows = conn.execute(sa.select(identity_runs.c.id, identity_runs.c.started_at, identity_runs.c.finished_at,
                                  identity_runs.c.summary).order_by(identity_runs.c.id.desc()).limit(limit))
    return [{"id": r.id, "started_at": r.started_at.isoformat(),
             "finished_at": r.finished_at.isoformat() if r.finished_at else None, "summary": r.summary} for r in rows]


def _decide_pair(conn: sa.Connection, a: Key, b: Key, status: str, by: str) -> None:
    t = identity_pairs
    where = (t.c.practice_a == a[0], t.c.source_a == a[1], t.c.practice_b == b[0], t.c.source_b == b[1])
    values = {"status": status, "decided_by": by[:64], "decided_at": _now()}
    if conn.execute(sa.update(t).where(*where).values(**values)).rowcount == 0:
        conn.execute(sa.insert(t).values(practice_a=a[0], source_a=a[1], practice_b=b[0], source_b=b[1],
                                         rule="manual", scored_at=_now(), **values))


def _require_patients(conn: sa.Connection, *keys: Key) -> None:
    patients = RECORD_TABLES["patient"]
    for practice, source_id in keys:
        if conn.execute(sa.select(patients.c.id).where(patients.c.practice == practice,
                                                       patients.c.source_id == source_id)).first() is None:
            raise NotFound(f"no patient {source_id!r} at practice {practice!r}")


def _key_dict(key: Key) -> dict[str, str]:
    return {"practice": key[0], "source_id": key[1]}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
