"""835 (005010X221A1) electronic remittance advice → ``remittance`` records.

One record per service line (SVC); a claim (CLP) without lines is one record of its own. A claim
with lines that also carries claim-level adjustments (CAS before its first SVC) gives one more
record for those (``…:0``, paid 0), so every adjustment of the payment is counted once.

Decisions where the guide leaves room:

- ``source_id`` is ``TRN-02:TRN-03:claim:line`` (the payment's trace, the payer's id, the claim's
  and the line's position in the payment, 1-based; line 0 for a claim-level record): the same 835
  sent twice gives the same records, and a reversal or correction in a later payment gives records
  of its own, so the original, its reversal and the correction add up to the corrected amounts;
- reversals (CLP-02 = 22) carry negative amounts. Payers send them signed; one that sends a reversal
  with positive amounts has each amount of the claim negated;
- the service date is the line's DTM*472, else its DTM*150 (service period start), else the
  claim's DTM*232 (statement from);
- remark codes are the line's LQ codes followed by the claim's (MOA-03 to -07, MIA-05 and -20 to
  -23), each once; a claim-level record carries the claim's;
- ``charge_source_id`` is the line's REF*6R (the line item control number the practice sent on its
  837) when the payer returns it; matching otherwise is by claim id, procedure, date and amount;
- provider-level adjustments (PLB) are kept per payment as one record ``TRN-02:TRN-03:PLB`` whose
  adjustments are ``{group: "PLB", reason: PLB-03-1, amount}`` and whose paid amount is their
  negative (a PLB amount is taken from the payment), so the paid amounts of a payment add up to
  BPR-02;
- ``event_time`` is the functional group's date and time (GS-04, GS-05).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from hub.connector import Context

from .interchange import Transaction
from .values import Reader, date_time, money, whole

CAS_TRIPLES = 6  # reason, amount, quantity: up to six per CAS
PLB_PAIRS = 6
DENIED, REVERSAL = "4", "22"
# segments the mapping reads, or knows and leaves (names, contacts, references that are no field)
KNOWN = {"BPR", "TRN", "CUR", "REF", "DTM", "N1", "N2", "N3", "N4", "PER", "RDM", "LX", "TS3", "TS2", "CLP",
         "CAS", "NM1", "MIA", "MOA", "AMT", "QTY", "SVC", "LQ", "PLB", "SE"}


class _Claim:
    def __init__(self, clp: list[str], number: int, pos: int) -> None:
        self.clp = clp
        self.number = number
        self.pos = pos
        self.cas: list[dict[str, Any]] = []
        self.remarks: list[str] = []
        self.statement_from: str | None = None
        self.lines: list[_Line] = []


class _Line:
    def __init__(self, svc: list[str], number: int, pos: int) -> None:
        self.svc = svc
        self.number = number
        self.pos = pos
        self.cas: list[dict[str, Any]] = []
        self.remarks: list[str] = []
        self.dates: dict[str, str] = {}
        self.control: str | None = None


def records(transaction: Transaction, context: Context) -> Iterator[dict[str, Any]]:
    r = Reader(transaction, context.origin)
    el = r.el
    head: dict[str, Any] = {"kind": "remittance"}
    payer_ids: dict[str, str] = {}
    party = ""  # the N1 loop the segments are in: PR (payer), PE (payee)
    claims: list[_Claim] = []
    claim: _Claim | None = None
    line: _Line | None = None
    plb: list[dict[str, Any]] = []
    bpr_seen = trn_seen = False
    event = date_time(el(transaction.gs, 4), el(transaction.gs, 5))
    if event:
        head["event_time"] = event

    for pos, seg in enumerate(transaction.segments[1:], start=2):
        r.pos = pos
        sid = seg[0]
        if sid == "SVC":
            if claim is None:
                raise r.error("SVC before any CLP", "SVC")
            line = _Line(seg, len(claim.lines) + 1, pos)
            claim.lines.append(line)
        elif sid == "DTM":
            if line is not None:
                line.dates.setdefault(el(seg, 1), r.date(el(seg, 2), f"DTM*{el(seg, 1)}") or "")
            elif claim is not None and el(seg, 1) == "232":
                claim.statement_from = r.date(el(seg, 2), "DTM*232")
        elif sid == "CAS":
            if claim is None:
                raise r.error("CAS before any CLP", "CAS")
            (line.cas if line is not None else claim.cas).extend(_adjustments(r, seg))
        elif sid == "CLP":
            line = None
            claim = _Claim(seg, len(claims) + 1, pos)
            claims.append(claim)
        elif sid == "LQ" and line is not None:
            if el(seg, 2):
                line.remarks.append(el(seg, 2))
        elif sid == "REF" and line is not None and el(seg, 1) == "6R":
            line.control = el(seg, 2) or None
        elif sid == "MOA" and claim is not None:
            claim.remarks.extend(el(seg, n) for n in range(3, 8) if el(seg, n))
        elif sid == "MIA" and claim is not None:
            claim.remarks.extend(el(seg, n) for n in (5, 20, 21, 22, 23) if el(seg, n))
        elif sid == "BPR":
            bpr_seen = True
            head["paid_on"] = r.date(el(seg, 16), "BPR-16")
        elif sid == "TRN" and not trn_seen:
            trn_seen = True
            head["trace_number"] = el(seg, 2) or None
            head["_payer_trn"] = el(seg, 3)
        elif sid == "N1":
            party = el(seg, 1)
            if party == "PR":
                head["payer_name"] = el(seg, 2) or None
                if el(seg, 4):
                    payer_ids["N1"] = el(seg, 4)
            elif party == "PE":
                head["payee_npi"] = el(seg, 4) if el(seg, 3) == "XX" and el(seg, 4) else None
        elif sid == "REF" and claim is None and party == "PR" and el(seg, 1) == "2U":
            payer_ids["2U"] = el(seg, 2)
        elif sid == "PLB":
            plb.extend(_provider_adjustments(r, seg))
        elif sid not in KNOWN:
            context.tally.skip(sid)

    if not bpr_seen:
        raise r.error("BPR (financial information) is missing", "BPR")
    if not head.get("trace_number"):
        raise r.error("TRN-02 (the check or EFT trace number) is missing", "TRN-02")
    head["payer_id"] = payer_ids.get("2U") or payer_ids.get("N1") or None
    key = f"{head['trace_number']}:{head.pop('_payer_trn') or head['payer_id'] or ''}"

    for claim in claims:
        yield from _claim_records(r, claim, head, key)
    if plb:
        total = sum((a["amount"] for a in plb), Decimal(0))
        yield {**head, "source_id": f"{key}:PLB", "adjustments": [{**a, "amount": money(a["amount"])} for a in plb],
               "adjustment_amount": money(total), "paid_amount": money(-total), "denied": False}


def _claim_records(r: Reader, claim: _Claim, head: dict[str, Any], key: str) -> Iterator[dict[str, Any]]:
    clp = claim.clp
    status = r.el(clp, 2)
    r.pos = claim.pos
    charged, paid = r.amount(clp, 3, required=True), r.amount(clp, 4, required=True)
    first = next((a for a in (charged, paid) if a), Decimal(0))
    sign = -1 if status == REVERSAL and first is not None and first > 0 else 1
    claim_part = {**head, "claim_id": r.el(clp, 1) or None, "payer_claim_id": r.el(clp, 7) or None,
                  "claim_status": status or None, "denied": status == DENIED}
    remarks = list(dict.fromkeys(claim.remarks))

    def signed(value: Decimal | None) -> str | None:
        return money(None if value is None else value * sign)

    def adjustments(cas: list[dict[str, Any]]) -> dict[str, Any]:
        return {"adjustments": [{**a, "amount": signed(a["amount"])} for a in cas],
                "adjustment_amount": signed(sum((a["amount"] for a in cas), Decimal(0))) if cas else None}

    if not claim.lines:
        yield {**claim_part, "source_id": f"{key}:{claim.number}:0", "charged_amount": signed(charged),
               "paid_amount": signed(paid), **adjustments(claim.cas), "service_date": claim.statement_from,
               "remark_codes": remarks}
        return
    if claim.cas:
        yield {**claim_part, "source_id": f"{key}:{claim.number}:0", "paid_amount": "0", **adjustments(claim.cas),
               "service_date": claim.statement_from, "remark_codes": remarks}
    for line in claim.lines:
        r.pos = line.pos
        svc = line.svc
        procedure = r.parts(svc, 1)
        units = r.quantity(svc, 5)
        yield {**claim_part, "source_id": f"{key}:{claim.number}:{line.number}",
               "charge_source_id": line.control,
               "procedure_code": procedure[1] if len(procedure) > 1 and procedure[1] else None,
               "modifiers": [m for m in procedure[2:6] if m],
               "charged_amount": signed(r.amount(svc, 2, required=True)),
               "paid_amount": signed(r.amount(svc, 3, required=True)),
               "units": 1 if units is None else whole(abs(units)),
               **adjustments(line.cas),
               "service_date": line.dates.get("472") or line.dates.get("150") or claim.statement_from,
               "remark_codes": list(dict.fromkeys(line.remarks + remarks))}


def _adjustments(r: Reader, seg: list[str]) -> list[dict[str, Any]]:
    group = r.el(seg, 1)
    if not group:
        raise r.error("the claim adjustment group code is missing", "CAS-01")
    out = []
    for i in range(min(CAS_TRIPLES, len(seg) // 3)):  # CAS-02/03/04, -05/06/07, ...
        reason, at = seg[2 + 3 * i], 3 + 3 * i
        amount = r.amount(seg, at)
        if reason and amount is not None:
            out.append({"group": group, "reason": reason, "amount": amount})
        elif reason or amount is not None:
            raise r.error("a CAS reason code without its amount (or an amount without its reason)",
                          f"CAS-{2 + 3 * i:02d}")
    if not out:
        raise r.error("a CAS without a reason code and amount", "CAS-02")
    return out


def _provider_adjustments(r: Reader, seg: list[str]) -> list[dict[str, Any]]:
    out = []
    for i in range(PLB_PAIRS):
        reason, at = r.parts(seg, 3 + 2 * i)[0], 4 + 2 * i
        amount = r.amount(seg, at)
        if reason and amount is not None:
            out.append({"group": "PLB", "reason": reason, "amount": amount})
    return out
