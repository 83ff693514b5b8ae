"""Remittances land on their charges: a remittance line that names no charge is linked, as it is stored,
to the charge of its claim with the claim line it names (a FHIR ClaimResponse that names its Claim by
number), else with its procedure, service date and charged amount.

An 835 names the practice's charge only when the payer returns the line item control number (REF*6R);
otherwise the link is the claim (835 CLP-01 = 837 CLM-01, the patient control number) and the service
line (``hub.store.remittances.find_line``). The link is made in ``hub_records_storing``, before the
report upkeep reads the batch (``tryfirst``), so the payment counts on its charge's service date like
any other. Charges of the same batch count (an 837 and its 835 ingested together); a remittance stored
before its charge stays unlinked until its message is reprocessed (``hub remit unmatched`` lists it).

A default plugin (``remit-link``, ``hub.plugins.DEFAULT_PLUGINS``): an operator may leave it out.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from hub import hookimpl

# SQLAlchemy and the store are imported in the hook: every command registers this plugin
if TYPE_CHECKING:
    import sqlalchemy as sa

    from hub.hookspecs import RecordBatch


class _Line:
    __slots__ = ("amount", "claim_line", "procedure_code", "service_date", "source_id")

    def __init__(self, source_id: str, procedure_code: Any, service_date: Any, amount: Any,
                 claim_line: Any = None) -> None:
        self.source_id, self.procedure_code, self.service_date, self.amount = (source_id, procedure_code,
                                                                               service_date, amount)
        self.claim_line = claim_line


@hookimpl(tryfirst=True)
def hub_records_storing(conn: sa.Connection, batch: RecordBatch) -> None:
    from hub.reports.rollups import records_by_kind  # the batch's records by kind, shared with the report upkeep

    by_kind = records_by_kind(batch)
    wanting = [r for r in by_kind.get("remittance", ()) if not r.get("charge_source_id")
               and r.get("claim_id") and (r.get("procedure_code") or r.get("claim_line") is not None)]
    if not wanting:
        return
    import sqlalchemy as sa

    from hub.model.tables import RECORD_TABLES
    from hub.store.remittances import find_line

    lines: dict[tuple[str, str], list[_Line]] = defaultdict(list)
    claims: dict[str, set[str]] = defaultdict(set)
    for r in wanting:
        claims[r["practice"]].add(r["claim_id"])
    for r in by_kind.get("charge", ()):  # charges of this batch first: they are the newest
        if r.get("claim_id") in claims.get(r["practice"], ()):
            lines[(r["practice"], r["claim_id"])].append(
                _Line(r["source_id"], r.get("procedure_code"), r.get("service_date"), r.get("amount"),
                      r.get("claim_line")))
    charges = RECORD_TABLES["charge"]
    for practice, ids in claims.items():
        query = (sa.select(charges.c.source_id, charges.c.claim_id, charges.c.procedure_code, charges.c.service_date,
                           charges.c.amount, charges.c.claim_line)
                 .where(charges.c.practice == practice, charges.c.claim_id.in_(sorted(ids)))
                 .order_by(charges.c.source_id))
        for row in conn.execute(query):
            lines[(practice, row.claim_id)].append(_Line(row.source_id, row.procedure_code, row.service_date,
                                                         row.amount, row.claim_line))
    for r in wanting:
        found = find_line(lines.get((r["practice"], r["claim_id"]), ()), r.get("procedure_code"),
                          r.get("service_date"), r.get("charged_amount"), r.get("claim_line"))
        if found is not None:
            r["charge_source_id"] = found.source_id
