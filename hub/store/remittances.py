"""Remittances and the charges they pay: which remittance lines find their charge, and why not.

A remittance line matches a charge when

1. its ``charge_source_id`` names a stored charge: an 835 line's REF*6R, a DFT posting's charge, or the
   link ``hub.reports.remit_link`` makes as the remittance is stored, to the charge of the same claim
   (``claim_id``: the patient control number, 835 CLP-01 / 837 CLM-01) with its procedure, service date
   and charged amount (in absolute value: a reversal's amounts are negative) (``find_line``);
2. or it is claim-level (no procedure) and its claim has a charge.

A remittance stored before its charge is not linked: it is listed, with the charge it would link to.

Provider-level adjustments (PLB records) pay no charge and are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from hub.model.tables import RECORD_TABLES


@dataclass(frozen=True)
class Unmatched:
    source_id: str
    claim_id: str | None
    procedure_code: str | None
    service_date: str | None
    charged_amount: Decimal | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"source_id": self.source_id, "claim_id": self.claim_id, "procedure_code": self.procedure_code,
                "service_date": self.service_date,
                "charged_amount": None if self.charged_amount is None else str(self.charged_amount),
                "reason": self.reason}


@dataclass
class MatchReport:
    remittances: int
    matched: int
    unmatched: list[Unmatched]

    @property
    def share(self) -> float | None:
        return self.matched / self.remittances if self.remittances else None


def match_report(conn: sa.Connection, practice: str) -> MatchReport:
    charges, remits = RECORD_TABLES["charge"], RECORD_TABLES["remittance"]
    known = {row[0] for row in conn.execute(sa.select(charges.c.source_id).where(charges.c.practice == practice))}
    by_claim: dict[str, list[Any]] = {}
    for line in conn.execute(sa.select(charges.c.source_id, charges.c.claim_id, charges.c.procedure_code,
                                       charges.c.service_date, charges.c.amount, charges.c.claim_line)
                             .where(charges.c.practice == practice, charges.c.claim_id.is_not(None))):
        by_claim.setdefault(line.claim_id, []).append(line)
    total, matched, unmatched = 0, 0, []
    query = (sa.select(remits.c.source_id, remits.c.charge_source_id, remits.c.claim_id, remits.c.procedure_code,
                       remits.c.service_date, remits.c.charged_amount, remits.c.adjustments, remits.c.claim_line)
             .where(remits.c.practice == practice).order_by(remits.c.source_id))
    for row in conn.execute(query):
        adjustments = row.adjustments or []
        if row.claim_id is None and adjustments and all(a.get("group") == "PLB" for a in adjustments):
            continue  # a provider-level adjustment pays no charge
        total += 1
        reason = _why_not(row, known, by_claim)
        if reason is None:
            matched += 1
        else:
            unmatched.append(Unmatched(row.source_id, row.claim_id, row.procedure_code,
                                       row.service_date.isoformat() if row.service_date else None,
                                       row.charged_amount, reason))
    return MatchReport(total, matched, unmatched)


def find_line(lines: Sequence[Any], procedure: str | None, service_date: Any, charged: Decimal | None,
              claim_line: int | None = None) -> Any:
    """The first of a claim's charge lines (objects with ``procedure_code``, ``service_date``, ``amount``,
    ``claim_line``) that a remittance line pays: the line of that number when the remittance names one
    (``claim_line``: a FHIR ClaimResponse's itemSequence), else the same procedure, service date (when it
    has one) and charged amount (in absolute value: a reversal's is negative); None when none is."""
    if claim_line is not None:
        return next((line for line in lines if line.claim_line == claim_line), None)
    for line in lines:
        if line.procedure_code != procedure:
            continue
        if service_date is not None and line.service_date != service_date:
            continue
        if charged is not None and (line.amount is None or line.amount != abs(charged)):
            continue
        return line
    return None


def _why_not(row: Any, known: set[str], by_claim: dict[str, list[Any]]) -> str | None:
    """None when the remittance finds its charge, else why not (no patient data: codes and ids only)."""
    if row.charge_source_id:
        return None if row.charge_source_id in known else f"no stored charge {row.charge_source_id!r}"
    if not row.claim_id:
        return "no charge id and no claim id"
    lines = by_claim.get(row.claim_id)
    if not lines:
        return f"no charge of claim {row.claim_id!r}"
    if row.claim_line is not None:
        found = find_line(lines, None, None, None, row.claim_line)
        if found is None:
            return f"claim {row.claim_id!r} has no line {row.claim_line}"
        return (f"its charge {found.source_id!r} arrived after it: reprocess the remittance's message "
                "(hub messages reprocess) to link them")
    if not row.procedure_code:
        return None  # a claim-level remittance: the claim is there
    found = find_line(lines, row.procedure_code, row.service_date, row.charged_amount)
    if found is not None:  # linked as it is stored (hub.reports.remit_link): the charge came later
        return (f"its charge {found.source_id!r} arrived after it: reprocess the remittance's message "
                "(hub messages reprocess) to link them")
    lines = [c for c in lines if c.procedure_code == row.procedure_code]
    if not lines:
        return f"claim {row.claim_id!r} has no line of procedure {row.procedure_code}"
    if row.service_date is not None:
        lines = [c for c in lines if c.service_date == row.service_date]
        if not lines:
            return f"claim {row.claim_id!r} has no {row.procedure_code} on {row.service_date.isoformat()}"
    return f"claim {row.claim_id!r} has no {row.procedure_code} charged {abs(row.charged_amount)}"
