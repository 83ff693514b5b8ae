"""A stored message as the console shows it: its content, what its practice's current mapping reads from
it, the answer its sender got, and the records it gave (lineage)."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from hub.connector import Outcome
from hub.errors import HubError
from hub.mapping import load_mapping
from hub.model.tables import lineage, messages
from hub.pipeline.normalize import normalize_payload
from hub.store.practices import get_practice

SHARED_KINDS = ("provider", "location")
RECORDS_SHOWN = 200  # a message's records listed on its page at most (a big FHIR bundle gives thousands)


def message_detail(runtime: Any, message_id: int) -> dict[str, Any] | None:
    with runtime.engine.connect() as conn:
        row = conn.execute(sa.select(messages).where(messages.c.id == message_id)).first()
        if row is None:
            return None
        message = {k: v for k, v in row._mapping.items() if k != "dedup_key"}
        original = message["duplicate_of"]
        produced = [dict(r._mapping) for r in conn.execute(
            sa.select(lineage.c.kind, lineage.c.source_id).where(lineage.c.message_id == (original or message_id))
            .order_by(lineage.c.kind, lineage.c.source_id).limit(RECORDS_SHOWN))]
        others = _other_messages(conn, message["practice"], produced, original or message_id)
        practice = get_practice(conn, message["practice"])
    raw: bytes | None = message.pop("raw")
    detail: dict[str, Any] = {"message": message, "produced": produced, "others": others,
                              "content": _text(raw) if raw is not None else None,
                              "reading": None, "ack": None}
    if raw is not None:
        detail["reading"], detail["ack"] = _read(runtime, message, raw, practice)
    return detail


def _text(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _other_messages(conn: sa.Connection, practice: str, produced: list[dict[str, Any]], message_id: int
                    ) -> list[dict[str, Any]]:
    """The other messages that touched this message's records: the record's history across the feed (not
    of the providers and locations it names, which nearly every message of the practice names too)."""
    pairs = [(r["kind"], r["source_id"]) for r in produced if r["kind"] not in SHARED_KINDS][:50]
    if not pairs:
        return []
    q = (sa.select(lineage.c.kind, lineage.c.source_id, lineage.c.message_id)
         .where(lineage.c.practice == practice, sa.tuple_(lineage.c.kind, lineage.c.source_id).in_(pairs),
                lineage.c.message_id != message_id)
         .order_by(lineage.c.message_id.desc()).limit(50))
    return [dict(r._mapping) for r in conn.execute(q)]


def _read(runtime: Any, message: dict[str, Any], raw: bytes, practice: dict[str, Any]
          ) -> tuple[dict[str, Any], str | None]:
    """The message read again through its practice's current mapping (nothing is stored), and the
    answer its connector gives for the message's stored outcome."""
    try:
        mapping = load_mapping(practice["mapping"], source=f"mapping of practice {practice['slug']}")
        connector = message["connector"] if message["connector"] in runtime.plugins.connectors.names() else None
        results = normalize_payload(runtime.plugins, raw, practice=practice["slug"], connector=connector,
                                    mapping=mapping, origin=message.get("origin"), timezone=practice["timezone"])
    except HubError as exc:
        return {"error": str(exc), "records": []}, None
    first = results[0]
    records = [{"kind": r.get("kind"), "source_id": r.get("source_id"),
                "fields": json.dumps({k: v for k, v in r.items() if k not in ("kind", "source_id", "practice")},
                                     default=str, indent=1)}
               for n in results for r in n.records][:RECORDS_SHOWN]
    error = next((str(n.error) for n in results if n.error is not None), None)
    ack = None
    try:
        chosen = runtime.plugins.connectors.get(connector) if connector else None
        if chosen is not None:
            outcome = Outcome(accepted=message["status"] in ("processed", "received", "resolved"),
                              duplicate=message["status"] == "duplicate", error=message.get("error"),
                              message_id=message["id"])
            answer = chosen.acknowledge(first.envelope, outcome)
            ack = _text(answer) if answer else None
    except Exception:  # an answer the connector cannot build for an unreadable message: none shown
        ack = None
    return {"error": error, "records": records, "tally": first.tally.summary() if first.tally else None}, ack
