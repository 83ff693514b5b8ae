"""Sample 835 files of remittance records (``Connector.render``): the demo, the tests and the benchmarks.

Each month's remittances (by ``paid_on``) are one file ``YYYY-MM/remit.835``: one interchange, one
functional group, one 835 transaction per payment (a payer's remittances of one day), each
remittance one claim (CLP, its ``claim_id``) of one service line (SVC) that carries its charge's
procedure, modifiers, amount, units and service date, its adjustments (CAS, one per group) and the
charge's id as REF*6R. Denied remittances have CLP-02 = 4, others 1. Records other than remittances
(and the charges they refer to) are not written: an 835 carries payments only.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from hub.connector import Rendered, RenderOptions

Record = Mapping[str, Any]


def render_files(records: Sequence[Record], options: RenderOptions) -> list[Rendered]:
    if options.shuffled:
        raise NotImplementedError("the x12 connector writes 835s in payment order only")
    charges = {r["source_id"]: r for r in records if r["kind"] == "charge"}
    patients = {r["source_id"]: r for r in records if r["kind"] == "patient"}
    payments: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        if r["kind"] == "remittance" and r.get("paid_on"):
            payments.setdefault((str(r["paid_on"])[:10], r.get("payer_name") or "UNKNOWN PAYER"), []).append(r)
    months: dict[str, list[tuple[str, str]]] = {}
    for key in sorted(payments):
        months.setdefault(key[0][:7], []).append(key)
    files = []
    for number, (month, keys) in enumerate(sorted(months.items()), start=1):
        transactions = [_transaction(i, day, payer, payments[(day, payer)], charges, patients, options)
                        for i, (day, payer) in enumerate(keys, start=1)]
        last = max(day for day, _ in keys)
        files.append(Rendered(f"{month}/remit.835", _interchange(number, _d8(last), transactions, options).encode()))
    return files


def _payer_id(name: str) -> str:
    return (re.sub(r"[^A-Z0-9]", "", name.upper()) or "PAYER")[:10]


def _tax_id(name: str) -> str:
    """TRN-03: 1 and a payer's nine-digit tax id (made up, stable per name)."""
    return f"1{zlib.crc32(name.encode()) % 10**9:09d}"


def _money(value: Any) -> str:
    return str(Decimal(str(value or 0)).quantize(Decimal("0.01")))


def _d8(day: Any) -> str:
    return str(day)[:10].replace("-", "")


def _transaction(number: int, day: str, payer: str, remits: list[Record], charges: Mapping[str, Record],
                 patients: Mapping[str, Record], options: RenderOptions) -> list[str]:
    total = sum((Decimal(_money(r.get("paid_amount"))) for r in remits), Decimal(0))
    trace = f"{options.practice[:12].upper()}{_d8(day)}{number:03d}"
    body = [f"BPR*I*{_money(total)}*C*ACH*CCP*01*999999992*DA*123456*1512345678**01*999988880*DA*98765*{_d8(day)}",
            f"TRN*1*{trace}*{_tax_id(payer)}", f"N1*PR*{payer}", "N3*PO BOX 100", "N4*SPRINGFIELD*IL*62701",
            f"REF*2U*{_payer_id(payer)}", "PER*BL*PROVIDER SERVICES*TE*5555550100",
            f"N1*PE*{options.practice.upper()}*XX*1999999984", "LX*1"]
    for r in sorted(remits, key=lambda r: str(r["source_id"])):
        charge = charges.get(r.get("charge_source_id") or "", {})
        charged = charge.get("amount") if charge else None
        if charged is None:
            charged = Decimal(_money(r.get("paid_amount"))) + Decimal(_money(r.get("adjustment_amount")))
        claim = r.get("claim_id") or r.get("charge_source_id") or r["source_id"]
        status = "4" if r.get("denied") else "1"
        body.append(f"CLP*{claim}*{status}*{_money(charged)}*{_money(r.get('paid_amount'))}**12*"
                    f"{r['source_id']}")
        patient = patients.get(charge.get("patient_source_id") or "", {})
        body.append("*".join(["NM1", "QC", "1", patient.get("family_name") or "", patient.get("given_name") or "",
                              "", "", "", "MR", charge.get("patient_source_id") or claim]))
        procedure = ":".join(["HC", charge.get("procedure_code") or "99499", *(charge.get("modifiers") or ())])
        body.append(f"SVC*{procedure}*{_money(charged)}*{_money(r.get('paid_amount'))}**{charge.get('units') or 1}")
        if charge.get("service_date"):
            body.append(f"DTM*472*{_d8(charge['service_date'])}")
        groups: dict[str, list[str]] = {}
        for a in r.get("adjustments") or ():
            groups.setdefault(a["group"], []).extend([a["reason"], _money(a["amount"]), ""])
        for group, triples in groups.items():
            for i in range(0, len(triples), 18):  # six reason/amount/quantity triples per CAS
                body.append("*".join(["CAS", group, *triples[i:i + 18]]).rstrip("*"))
        if r.get("charge_source_id"):
            body.append(f"REF*6R*{r['charge_source_id']}")
    return [f"ST*835*{number:04d}", *body, f"SE*{len(body) + 2}*{number:04d}"]


def _interchange(number: int, date: str, transactions: list[list[str]], options: RenderOptions) -> str:
    control = f"{number:09d}"
    sender = "SYNTHPAYERS"
    receiver = options.practice[:15].upper()
    out = [f"ISA*00*          *00*          *ZZ*{sender:<15}*ZZ*{receiver:<15}*{date[2:]}*2300*^*00501*{control}*0*P*:",
           f"GS*HP*{sender}*{receiver}*{date}*2300*{number}*X*005010X221A1"]
    for t in transactions:
        out += t
    out += [f"GE*{len(transactions)}*{number}", f"IEA*1*{control}"]
    return "~\n".join(out) + "~\n"
