"""Unmapped codes in the canonical store: what a practice sent that its mapping does not know yet.

A record with a source code and an empty mapped value is exactly an unmapped code
(the pipeline never drops it). Counted per code map and code, each with the id of a
message that carried it, so a person can look at one and fix the mapping.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hub.model.tables import RECORD_TABLES

# code map → (kind, field with the practice's code, field the mapping fills)
UNMAPPED_SLOTS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "visit_type": (("appointment", "visit_type", "service_line"), ("encounter", "visit_type", "service_line"),
                   ("charge", "visit_type", "service_line")),
    "location": (("appointment", "location_source_id", "mso_location"),
                 ("encounter", "location_source_id", "mso_location"), ("location", "source_id", "mso_location")),
    "provider": (("appointment", "provider_source_id", "provider_npi"), ("provider", "source_id", "npi")),
    "payer": (("coverage", "payer_name", "payer"), ("charge", "payer_name", "payer"),
              ("remittance", "payer_name", "payer")),
    "cancel_reason": (("appointment", "cancel_reason", "cancel_category"),),
}


def unmapped_codes(conn: sa.Connection, practice: str) -> list[dict[str, Any]]:
    """[{code_map, code, count, kinds, example_message_id}] most frequent first."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for map_name, slots in UNMAPPED_SLOTS.items():
        for kind, source_field, target_field in slots:
            table = RECORD_TABLES[kind]
            code = table.c[source_field]
            q = (sa.select(code, sa.func.count(), sa.func.min(table.c.message_id))
                 .where(table.c.practice == practice, code.is_not(None), code != "",
                        table.c[target_field].is_(None))
                 .group_by(code))
            for value, count, example in conn.execute(q):
                entry = found.setdefault((map_name, value), {"code_map": map_name, "code": value, "count": 0,
                                                             "kinds": [], "example_message_id": example})
                entry["count"] += count
                entry["kinds"].append(kind)
                if example is not None and (entry["example_message_id"] is None
                                            or example < entry["example_message_id"]):
                    entry["example_message_id"] = example
    return sorted(found.values(), key=lambda e: (e["code_map"], -e["count"], e["code"]))
