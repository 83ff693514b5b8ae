"""Providers across practices: one figure per person, keyed by NPI, named from the MSO roster.

Each practice names its providers by its own ids (a PM system's ``1001``, an EHR's user code);
the same surgeon working at two affiliates is two ids. The rollups slice by a provider key
instead of the local id, the first of:

1. the NPI the record itself carries: an appointment's ``provider_npi`` (HL7 v2 AIP/PV1-7 with
   an NPI, FHIR Practitioner reference with an NPI identifier, or the practice mapping's
   ``provider`` map), a charge's ``rendering_npi`` (X12 837 NM1*82);
2. the NPI of the practice's provider record of that id (``providers``: every XCN with an NPI in
   HL7 v2, every FHIR Practitioner, a CSV provider export; the mapping's ``provider`` map fills it);
3. the local id itself when it is ten digits (a practice that uses NPIs as its ids);
4. else ``practice/local-id``: a provider no NPI is known for stays apart from every other
   practice's, never merged by an id that means someone else elsewhere.

A report slicing by provider lists in ``providers`` each key it shows with its name: from the MSO
roster (``mappings/mso/providers.yaml``, keyed by NPI: the MSO's own spelling), else from the
latest provider record of that NPI or id (the feed's spelling), else none. The key is resolved
when a cell is recomputed; after an NPI reaches a provider already reported by its local id (a
roster or mapping fix), ``hub report rebuild`` regroups the history.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hub.mapping.vocabulary import load_vocabulary
from hub.model.tables import RECORD_TABLES

providers_table = RECORD_TABLES["provider"]


def _ten_digits(column: str) -> str:
    """SQL: the column is ten digits (the same text on SQLite and PostgreSQL: no GLOB, no regex)."""
    stripped = column
    for digit in "0123456789":
        stripped = f"replace({stripped}, '{digit}', '')"
    return f"length({column}) = 10 AND {stripped} = ''"


def provider_key(alias: str, npi_columns: tuple[str, ...] = ()) -> str:
    """SQL: the provider key of the rows of ``alias`` (columns ``practice``, ``provider_source_id`` and
    the ``npi_columns`` the kind has); '' when the row names no provider."""
    local = f"{alias}.provider_source_id"
    parts = [f"NULLIF({alias}.{column}, '')" for column in npi_columns]
    parts.append(f"(SELECT MAX(pv.npi) FROM providers pv WHERE pv.practice = {alias}.practice AND "
                 f"pv.source_id = {local} AND pv.npi <> '')")
    parts.append(f"CASE WHEN {_ten_digits(local)} THEN {local} END")
    parts.append(f"CASE WHEN {local} <> '' THEN {alias}.practice || '/' || {local} END")
    return f"COALESCE({', '.join(parts)}, '')"


def _name(family: Any, given: Any) -> str | None:
    text = " ".join(str(p).strip() for p in (given, family) if p and str(p).strip())
    return text or None


def directory(conn: sa.Connection, keys: set[str]) -> list[dict[str, Any]]:
    """Each provider key with its NPI, name, specialty, and where the name is from (``roster``, ``feed``, None)."""
    keys = {k for k in keys if k}
    if not keys:
        return []
    roster = load_vocabulary().entries.get("providers", {})
    npis = {k for k in keys if "/" not in k}
    locals_ = {tuple(k.split("/", 1)) for k in keys if "/" in k}
    fed: dict[str, tuple[str, Any]] = {}  # key → the latest provider record's name and specialty
    p = providers_table.c
    query = sa.select(p.practice, p.source_id, p.npi, p.family_name, p.given_name, p.specialty).where(
        sa.or_(p.npi.in_(npis), p.source_id.in_(npis), *(sa.and_(p.practice == practice, p.source_id == local)
                                                         for practice, local in locals_)))
    for practice, source_id, npi, family, given, fed_specialty in conn.execute(query.order_by(p.updated_at)):
        key = npi if npi in npis else source_id if source_id in npis else f"{practice}/{source_id}"
        if key in keys and (fed_name := _name(family, given)):
            fed[key] = (fed_name, fed_specialty)
    out = []
    for key in sorted(keys):
        npi = None if "/" in key else key
        listed = roster.get(npi or "")
        name: str | None = None
        specialty: Any = None
        source: str | None = None
        if listed and _name(listed.get("family_name"), listed.get("given_name")):
            name, specialty, source = _name(listed.get("family_name"), listed.get("given_name")), \
                listed.get("specialty"), "roster"
        elif key in fed:
            (name, specialty), source = fed[key], "feed"
        out.append({"id": key, "npi": npi, "name": name, "specialty": specialty, "name_from": source})
    return out
