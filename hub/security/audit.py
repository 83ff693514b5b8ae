"""The audit log: who touched patient-level data, what, when, from where, and the outcome.

One row per request that pushes a feed, reads the message store or a practice's scorecard, or
reprocesses; one per ``hub messages list`` (the address is ``cli:`` and the system user); and one
per message marked resolved (``hub messages resolve``: the address is ``cli:`` and the
system user, the outcome the reason given).
A row names the key (its public id), the action, the target (a practice slug or a
message id), the client address and the outcome (an HTTP status or a word). It
never carries patient data: no payload, no field of a message.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from hub.model.tables import audit_log


@dataclass(frozen=True)
class AuditEntry:
    key_id: str | None
    action: str
    target: str | None = None
    practice: str | None = None
    address: str | None = None
    outcome: str | None = None
    at: dt.datetime | None = None

    def row(self) -> dict[str, Any]:
        return {"at": self.at or dt.datetime.now(dt.UTC), "key_id": self.key_id, "action": self.action[:64],
                "target": _text(self.target, 255), "practice": _text(self.practice, 64),
                "address": _text(self.address, 64), "outcome": _text(self.outcome, 64)}


def _text(value: str | None, size: int) -> str | None:
    """A caller's text as the log keeps it: cut to its column, no NUL (PostgreSQL's text takes none)."""
    return value.replace("\x00", "\ufffd")[:size] or None if value else None


# PostgreSQL: a group's entries as one statement of a fixed text (arrays), converted and prepared once
_PG_INSERT = (
    "INSERT INTO audit_log (at, key_id, action, target, practice, address, outcome) "
    "SELECT * FROM unnest(%(at)s::timestamp[], %(key_id)s::text[], %(action)s::text[], %(target)s::text[], "
    "%(practice)s::text[], %(address)s::text[], %(outcome)s::text[])")


def record(conn: sa.Connection, entries: Sequence[AuditEntry]) -> None:
    """Write entries in the caller's transaction (many at once for a group of requests)."""
    if not entries:
        return
    rows = [e.row() for e in entries]
    if conn.dialect.name != "postgresql":
        conn.execute(sa.insert(audit_log), rows)
        return
    columns: dict[str, list[Any]] = {name: [row[name] for row in rows] for name in rows[0]}
    columns["at"] = [at.astimezone(dt.UTC).replace(tzinfo=None) for at in columns["at"]]  # the column holds naive UTC
    conn.exec_driver_sql(_PG_INSERT, columns)


def list_entries(conn: sa.Connection, *, key_id: str | None = None, action: str | None = None,
                 practice: str | None = None, since: dt.datetime | None = None, limit: int = 100,
                 offset: int = 0) -> list[dict[str, Any]]:
    """Entries, newest first."""
    q = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit).offset(offset)
    if key_id:
        q = q.where(audit_log.c.key_id == key_id)
    if action:
        q = q.where(audit_log.c.action == action)
    if practice:
        q = q.where(audit_log.c.practice == practice)
    if since:
        q = q.where(audit_log.c.at >= since)
    return [dict(r._mapping) for r in conn.execute(q)]
