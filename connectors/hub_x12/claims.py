"""837P (005010X222A1) professional claims → ``charge`` records (one per SV1 service line), with the
claim's ``patient`` and its rendering ``provider``s.

Decisions where the guide leaves room:

- a charge's ``source_id`` is the line's REF*6R (the practice's line item control number, which the
  payer returns on the 835) when sent, else ``CLM-01:LX-01``;
- the patient is the 2010CA patient (NM1*QC) when the claim has one, else the subscriber (NM1*IL);
  its ``source_id`` is the claim's medical record number (REF*EA) when sent, else the subscriber's
  member id (NM1*IL NM1-09), with ``/`` and the patient's given name for a dependent;
- the provider of a line is its rendering provider (2420A NM1*82), else the claim's (2310B), else
  the billing provider (2010AA NM1*85); providers are named by NPI (``provider_source_id`` is the NPI);
- diagnosis pointers (SV1-07) index the claim's HI codes in the order sent (1 to 12); codes keep
  their form as sent (ICD-10 without the dot);
- the service date is the line's DTP*472 (the first date of a range), else the claim's;
  ``posted_on`` is the claim's creation date (BHT-04); ``event_time`` is BHT-04 with BHT-05.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hub.connector import Context

from .interchange import Transaction, digits
from .values import Reader, date_time, money, whole

SEX = {"F": "female", "M": "male", "U": "unknown"}
DIAGNOSIS_QUALIFIERS = {"ABK", "ABF", "BK", "BF"}
KNOWN = {"BHT", "NM1", "N2", "N3", "N4", "PER", "HL", "PRV", "REF", "SBR", "PAT", "DMG", "CLM", "DTP", "PWK",
         "CN1", "AMT", "K3", "NTE", "CR1", "CR2", "CRC", "HI", "HCP", "LX", "SV1", "SV5", "PS1", "LIN", "CTP",
         "QTY", "MEA", "OI", "MOA", "SVD", "CAS", "LQ", "FRM", "SE", "CUR"}


class _Person:
    def __init__(self) -> None:
        self.family: str | None = None
        self.given: str | None = None
        self.member_id: str | None = None
        self.birth_date: str | None = None
        self.sex: str | None = None
        self.postal_code: str | None = None


def records(transaction: Transaction, context: Context) -> Iterator[dict[str, Any]]:
    r = Reader(transaction, context.origin)
    el = r.el
    posted_on = event = None
    billing_npi = None
    subscriber: _Person | None = None
    patient: _Person | None = None
    person: _Person | None = None  # the one the N4 and DMG that follow describe
    payer_name = payer_id = None
    claim: dict[str, Any] | None = None
    line: dict[str, Any] | None = None
    claims: list[dict[str, Any]] = []

    for pos, seg in enumerate(transaction.segments[1:], start=2):
        r.pos = pos
        sid = seg[0]
        if sid == "BHT":
            posted_on = r.date(el(seg, 4), "BHT-04")
            event = date_time(el(seg, 4), el(seg, 5))
        elif sid == "HL":
            level = el(seg, 3)
            claim = line = None
            person = None
            if level == "20":
                billing_npi = None
            elif level == "22":
                subscriber, patient, payer_name, payer_id = None, None, None, None
            elif level == "23":
                patient = None
        elif sid == "NM1":
            entity = el(seg, 1)
            npi = el(seg, 9) if el(seg, 8) == "XX" and el(seg, 9) else None
            person = None
            if entity == "85" and claim is None:
                billing_npi = npi
            elif entity == "IL":
                person = subscriber = _named(seg)
                subscriber.member_id = el(seg, 9) or None
            elif entity == "QC":
                person = patient = _named(seg)
            elif entity == "PR" and claim is None:
                payer_name, payer_id = el(seg, 3) or None, el(seg, 9) or None
            elif entity == "82" and claim is not None:
                who = {"npi": npi, "family": el(seg, 3) or None, "given": el(seg, 4) or None}
                (line if line is not None else claim)["rendering"] = who
        elif sid == "N4" and person is not None:
            person.postal_code = el(seg, 3) or None
        elif sid == "DMG" and person is not None:
            person.birth_date = r.date(el(seg, 2), "DMG-02") if el(seg, 1) == "D8" else None
            person.sex = SEX.get(el(seg, 3))
        elif sid == "CLM":
            line, person = None, None
            claim = {"id": el(seg, 1), "pos": pos, "subscriber": subscriber, "patient": patient or subscriber,
                     "dependent": patient is not None, "payer_name": payer_name, "payer_id": payer_id,
                     "billing_npi": billing_npi, "diagnoses": [], "lines": [], "date": None, "mrn": None,
                     "rendering": None}
            if not claim["id"]:
                raise r.error("CLM-01 (the patient control number) is missing", "CLM-01")
            claims.append(claim)
        elif sid == "HI" and claim is not None:
            for n in range(1, 13):
                parts = r.parts(seg, n)
                if len(parts) > 1 and parts[0] in DIAGNOSIS_QUALIFIERS and parts[1]:
                    claim["diagnoses"].append(parts[1])
        elif sid == "REF" and claim is not None:
            if line is None and el(seg, 1) == "EA":
                claim["mrn"] = el(seg, 2) or None
            elif line is not None and el(seg, 1) == "6R":
                line["control"] = el(seg, 2) or None
        elif sid == "LX" and claim is not None:
            line = {"number": el(seg, 1) or str(len(claim["lines"]) + 1), "sv1": None, "pos": pos,
                    "date": None, "control": None, "rendering": None}
            claim["lines"].append(line)
        elif sid == "SV1":
            if line is None:
                raise r.error("SV1 outside a service line (no LX before it)", "SV1")
            line["sv1"], line["pos"] = seg, pos
        elif sid == "DTP" and el(seg, 1) == "472" and claim is not None:
            (line if line is not None else claim)["date"] = r.date(el(seg, 3), "DTP*472")
        elif sid not in KNOWN:
            context.tally.skip(sid)

    providers: dict[str, dict[str, Any]] = {}
    patients: dict[str, dict[str, Any]] = {}
    for claim in claims:
        yield from _claim_records(r, claim, posted_on, event, providers, patients)
    yield from patients.values()
    yield from providers.values()


def _named(seg: list[str]) -> _Person:
    person = _Person()
    person.family = Reader.el(seg, 3) or None
    person.given = Reader.el(seg, 4) or None
    return person


def _claim_records(r: Reader, claim: dict[str, Any], posted_on: str | None, event: str | None,
                   providers: dict[str, dict[str, Any]], patients: dict[str, dict[str, Any]],
                   ) -> Iterator[dict[str, Any]]:
    stamp = {"event_time": event} if event else {}
    who: _Person | None = claim["patient"]
    subscriber: _Person | None = claim["subscriber"]
    member = subscriber.member_id if subscriber is not None else None
    patient_id = claim["mrn"]
    if patient_id is None and member:
        patient_id = f"{member}/{(who.given or '') if who else ''}" if claim["dependent"] else member
    if patient_id and who is not None and patient_id not in patients:
        patients[patient_id] = {
            "kind": "patient", "source_id": patient_id, "family_name": who.family, "given_name": who.given,
            "birth_date": who.birth_date, "sex": who.sex, "postal_code": who.postal_code,
            "identifiers": [{"system": "x12:member-id", "value": member}] if member and not claim["dependent"]
            else [], **stamp}
    if not claim["lines"]:
        r.pos = claim["pos"]
        raise r.error("the claim has no service line (LX/SV1)", "LX")
    for line in claim["lines"]:
        sv1 = line["sv1"]
        r.pos = line["pos"]
        if sv1 is None:
            raise r.error("the service line has no SV1", "SV1")
        procedure = r.parts(sv1, 1)
        pointers = [p for p in r.parts(sv1, 7) if p]
        diagnoses = []
        for p in pointers:
            if not digits(p) or not 1 <= int(p) <= len(claim["diagnoses"]):
                raise r.error(f"diagnosis pointer {p[:3]!r} points at no HI code of the claim "
                              f"({len(claim['diagnoses'])} sent)", "SV1-07")
            diagnoses.append(claim["diagnoses"][int(p) - 1])
        service_date = line["date"] or claim["date"]
        if not service_date:
            raise r.error("the service line has no service date (DTP*472)", "DTP*472")
        rendering = line["rendering"] or claim["rendering"] or {}
        npi = rendering.get("npi") or claim["billing_npi"]
        if rendering.get("npi") and rendering["npi"] not in providers:
            providers[rendering["npi"]] = {"kind": "provider", "source_id": rendering["npi"], "npi": rendering["npi"],
                                           "family_name": rendering["family"], "given_name": rendering["given"],
                                           **stamp}
        units = r.quantity(sv1, 4)
        yield {"kind": "charge", "source_id": line["control"] or f"{claim['id']}:{line['number']}",
               "claim_id": claim["id"], "claim_line": int(line["number"]) if digits(line["number"]) else None,
               "patient_source_id": patient_id, "provider_source_id": npi,
               "service_date": service_date, "posted_on": posted_on,
               "procedure_code": procedure[1] if len(procedure) > 1 and procedure[1] else None,
               "modifiers": [m for m in procedure[2:6] if m],
               "units": 1 if units is None else whole(units),
               "amount": money(r.amount(sv1, 2, required=True)),
               "diagnosis_codes": diagnoses, "payer_name": claim["payer_name"], "payer_id": claim["payer_id"],
               "rendering_npi": rendering.get("npi"), "billing_npi": claim["billing_npi"], **stamp}
