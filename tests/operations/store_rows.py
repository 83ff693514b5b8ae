"""Message store rows written as the pipeline leaves them, at chosen times (synthetic; no payload)."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import sqlalchemy as sa

from hub.model.tables import lineage, messages
from hub.store.engine import writer
from hub.store.practices import add_practice, set_status

_serial = itertools.count(1)


def practice(runtime: Any, slug: str, *, mapping: str | None = None, timezone: str | None = None,
             status: str = "live") -> None:
    with writer(runtime.engine).begin() as conn:
        add_practice(conn, slug, slug.title(), mapping=mapping, timezone=timezone)
        if status != "onboarding":
            set_status(conn, slug, status)


def arrive(runtime: Any, slug: str, at: dt.datetime, *, status: str = "processed", n: int = 1,
           connector: str = "hl7v2", message_type: str | None = "SIU^S12", control_id: str | None = None,
           mrn: str | None = None) -> list[int]:
    """``n`` messages received at ``at`` (processed a second later unless still ``received``); with ``mrn``,
    each yielded that patient (a lineage row)."""
    ids = []
    with writer(runtime.engine).begin() as conn:
        for _ in range(n):
            serial = next(_serial)
            row = {"practice": slug, "connector": connector, "received_at": at, "content_hash": f"h{serial}",
                   "dedup_key": None if status == "duplicate" else f"{slug}:k{serial}", "status": status,
                   "attempts": 0 if status == "received" else 1, "message_type": message_type,
                   "control_id": control_id or f"C{serial}", "queued_at": at, "raw": b"synthetic",
                   "processed_at": None if status == "received" else at + dt.timedelta(seconds=1),
                   "error": "PID.3: no MRN" if status == "error" else None}
            new_id = conn.execute(sa.insert(messages).values(**row).returning(messages.c.id)).scalar_one()
            ids.append(int(new_id))
            if mrn:
                conn.execute(sa.insert(lineage).values(kind="patient", practice=slug, source_id=mrn,
                                                       message_id=new_id))
    return ids
