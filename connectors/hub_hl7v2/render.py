"""Common-model records written as HL7 v2.5.1 batch files (``HL7v2Connector.render``): samples, never ingest.

- SIU^S12 when a visit is booked, then SIU^S14 (filler status Complete), SIU^S15 (cancelled, with
  the reason in SCH-6) or SIU^S26 (no-show), sent 30 minutes after the visit's end;
- REF^I12 for referrals (at 09:00 on the day received: RF1-6 its id, RF1-3 the specialty, RF1-7 and
  RF1-9 the day, PRD the referring provider), and an appointment names the referral it fulfils in
  SCH-26 (placer order number);
- DFT^P03 with the charge FT1s (type CG) of each encounter (at 18:00 on the day posted), and
  DFT^P03 payment FT1s (type PY, with adjustments as type AJ) when the payer pays (at 12:00).

One batch file per month and message family (``2025-03/siu.hl7``, ``ref``, ``dft``, ``pay``),
messages in time order and separated by CR LF; with ``shuffled`` one file per family holding the
whole history in no particular order (``backfill/siu.hl7``): a visit's completion can come before
its booking, a payment before its charge, and each message says when its event happened (MSH-7,
EVN-2).

Records read: ``patient`` (with its street line, phone and e-mail address when it has them),
``coverage``, ``provider``, ``appointment`` (with ``booked_at``, ``cancelled_at``,
``referral_source_id``), ``encounter``, ``referral``, ``charge`` (with ``posted_on``,
``location_source_id``), ``remittance`` (with ``claim_id``, ``payer_name``). Hint:
``_visit_name`` on an appointment, the visit type's display text (default: its code).

Settings (``RenderOptions.settings``): ``sending_application`` (MSH-3, default ``EHR``) and
``sending_facility`` (MSH-4, default the practice slug in capitals without dashes).
"""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hub.connector import Rendered, RenderOptions

from .er7 import escape

Record = Mapping[str, Any]
Timed = tuple[dt.datetime, str]  # (when the message was sent, its ER7 text)


def render_files(records: Sequence[Record], options: RenderOptions) -> list[Rendered]:
    return list(_files(records, options))


def _when(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def _index(records: Sequence[Record], kind: str) -> dict[str, Record]:
    return {r["source_id"]: r for r in records if r["kind"] == kind}


def _ts(value: dt.datetime | str, times: str = "local") -> str:
    """An HL7 DTM: local time with its offset, the UTC instant (+0000), or local time with no offset."""
    moment = _when(value) if isinstance(value, str) else value
    if times == "utc":
        return moment.astimezone(dt.UTC).strftime("%Y%m%d%H%M+0000")
    return moment.strftime("%Y%m%d%H%M" if times == "naive" else "%Y%m%d%H%M%z")


def _segment(name: str, *fields: str) -> str:
    return "|".join((name, *fields)).rstrip("|")


def _fields(values: dict[int, str]) -> list[str]:
    """HL7 fields by their 1-based position."""
    out = [""] * max(values)
    for position, value in values.items():
        out[position - 1] = value
    return out


class _Writer:
    def __init__(self, records: Sequence[Record], options: RenderOptions) -> None:
        self.times = options.times
        self.tz = ZoneInfo(options.timezone)
        self.app = str(options.settings.get("sending_application") or "EHR")
        self.facility = str(options.settings.get("sending_facility") or options.practice.upper().replace("-", ""))
        self.patients = _index(records, "patient")
        self.coverage = {r["patient_source_id"]: r for r in records if r["kind"] == "coverage"}
        self.providers = _index(records, "provider")
        self.control = 0

    def ts(self, value: dt.datetime | str) -> str:
        return _ts(value, self.times)

    def at(self, day: str, time: dt.time) -> dt.datetime:
        return dt.datetime.combine(dt.date.fromisoformat(day), time, tzinfo=self.tz)

    def msh(self, moment: dt.datetime | str, message_type: str) -> str:
        self.control += 1
        return _segment("MSH", "^~\\&", self.app, self.facility, "MSOHUB", "MSO", self.ts(moment), "", message_type,
                        f"{self.facility[:6]}{self.control:08d}", "P", "2.5.1")

    def pid(self, mrn: str) -> str:
        p = self.patients[mrn]
        # PID-11 the home address (street line when known, postal code); PID-13 the phone and e-mail address
        street = f"{escape(p['address_line'])}^^^^{p['postal_code']}^^H" if p.get("address_line") else \
            f"^^^^{p['postal_code']}"
        telecom = [f"{escape(p['phone'])}^PRN^PH"] if p.get("phone") else []
        if p.get("email"):
            telecom.append(f"^NET^Internet^{escape(p['email'])}")
        return _segment("PID", "1", "", f"{mrn}^^^{self.facility}^MR", "", f"{p['family_name']}^{p['given_name']}",
                        "", p["birth_date"].replace("-", ""), {"female": "F", "male": "M"}.get(p["sex"], "U"),
                        "", "", street, *(["", "~".join(telecom)] if telecom else []))

    def xcn(self, npi: str) -> str:
        p = self.providers[npi]
        return f"{npi}^{p['family_name']}^{p['given_name']}^^^^^^NPI^^^^NPI"

    def in1(self, mrn: str) -> str:
        c = self.coverage[mrn]
        return _segment("IN1", "1", c["payer_name"].replace(" ", "")[:10], c["payer_name"].replace(" ", "")[:10],
                        c["payer_name"], *[""] * 32, c["member_id"])

    def sch(self, a: Record, filler_status: str, event_reason: str = "") -> list[str]:
        start, minutes = _when(a["start"]), a["duration_min"]
        end = start + dt.timedelta(minutes=minutes)
        visit = f"{a['visit_type']}^{a.get('_visit_name', a['visit_type'])}^L"
        values = {1: f"{a['source_id']}^{self.app}", 2: f"{a['source_id']}^{self.app}",
                  6: event_reason, 7: visit, 8: visit, 9: str(minutes), 10: "min",
                  11: f"^^{minutes}^{self.ts(start)}^{self.ts(end)}", 25: filler_status}
        if a.get("referral_source_id"):  # SCH-26 placer order number: the referral (RF1-6) the visit fulfils
            values[26] = f"{a['referral_source_id']}^{self.app}"
        segments = [_segment("SCH", *_fields(values)),
                    _segment("TQ1", "1", "", "", "", "", "", self.ts(start), self.ts(end)),
                    self.pid(a["patient_source_id"]),
                    _segment("PV1", "1", "O", f"{a['location_source_id']}^^^{self.facility}", "", "", "",
                             self.xcn(a["provider_source_id"]))]
        segments += [_segment("RGS", "1", "A"),
                     _segment("AIS", "1", "A", visit, self.ts(start), "", "", str(minutes), "min", "", filler_status),
                     _segment("AIL", "1", "A", f"{a['location_source_id']}^^^{self.facility}", "", self.ts(start),
                              "", "", str(minutes), "min", "", filler_status),
                     _segment("AIP", "1", "A", self.xcn(a["provider_source_id"]), "", self.ts(start), "", "",
                              str(minutes), "min", "", filler_status)]
        return segments

    def scheduling(self, a: Record) -> list[Timed]:
        """The SIU messages of one appointment, with the time each was sent."""
        booked = _when(a["booked_at"])
        messages = [(booked, "\r".join([self.msh(booked, "SIU^S12^SIU_S12"), *self.sch(a, "Booked")]))]
        start = _when(a["start"])
        if a["status"] == "cancelled":
            when = _when(a["cancelled_at"])
            reason = f"{a['cancel_reason']}^^L"
            messages.append((when, "\r".join([self.msh(when, "SIU^S15^SIU_S12"),
                                              *self.sch(a, "Cancelled", reason)])))
        elif a["status"] in ("noshow", "fulfilled"):
            when = start + dt.timedelta(minutes=a["duration_min"] + 30)
            trigger, status = ("S26", "Noshow") if a["status"] == "noshow" else ("S14", "Complete")
            messages.append((when, "\r".join([self.msh(when, f"SIU^{trigger}^SIU_S12"), *self.sch(a, status)])))
        return messages

    def referral(self, r: Record) -> Timed:
        received = self.at(r["received_on"], dt.time(9, 0))
        family, given, *_ = r["referring_provider"].split(" ")
        day = r["received_on"].replace("-", "")
        rf1 = _fields({1: "A^Accepted^HL70283", 2: "R^Routine^HL70280", 3: f"{r['specialty']}^^L",
                       5: "O^Outpatient^HL70284", 6: f"{r['source_id']}^{self.app}", 7: day, 9: day})
        return received, "\r".join([self.msh(received, "REF^I12^REF_I12"), _segment("RF1", *rf1),
                                    _segment("PRD", "RP^Referring Provider^HL70286", f"{family}^{given}^^^^MD"),
                                    self.pid(r["patient_source_id"])])

    def charges(self, encounter: Record, lines: list[Record]) -> Timed:
        posted = self.at(lines[0]["posted_on"], dt.time(18, 0))
        mrn = encounter["patient_source_id"]
        segments = [self.msh(posted, "DFT^P03^DFT_P03"), _segment("EVN", "P03", self.ts(posted)), self.pid(mrn),
                    self.pv1(encounter)]
        for n, c in enumerate(lines, start=1):
            service = c["service_date"].replace("-", "")
            ft1 = _fields({1: str(n), 2: c["source_id"], 4: service, 5: c["posted_on"].replace("-", ""), 6: "CG",
                           7: f"{c['procedure_code']}^^CPT", 10: str(c["units"]), 11: f"{c['amount']}&USD",
                           16: f"{c['location_source_id']}^^^{self.facility}",
                           19: "~".join(f"{d}^^I10" for d in c["diagnosis_codes"]),
                           20: self.xcn(c["provider_source_id"]), 25: f"{c['procedure_code']}^^CPT",
                           26: "~".join(c["modifiers"])})
            segments.append(_segment("FT1", *ft1))
        segments.append(self.in1(mrn))
        return posted, "\r".join(segments)

    def pv1(self, encounter: Record) -> str:
        values = {1: "1", 2: "O", 3: f"{encounter['location_source_id']}^^^{self.facility}",
                  7: self.xcn(encounter["provider_source_id"]), 19: encounter["source_id"],
                  44: self.ts(encounter["start"]), 45: self.ts(encounter["end"])}
        return _segment("PV1", *_fields(values))

    def payments(self, encounter: Record, paid_on: str, pays: list[tuple[Record, Record]]) -> Timed:
        when = self.at(paid_on, dt.time(12, 0))
        mrn = encounter["patient_source_id"]
        segments = [self.msh(when, "DFT^P03^DFT_P03"), _segment("EVN", "P03", self.ts(when)), self.pid(mrn),
                    self.pv1(encounter)]
        n = 0
        for remit, charge in pays:
            for kind, amount, code in [("PY", remit["paid_amount"], "PAYMENT"),
                                       *[("AJ", a["amount"], f"{a['group']}-{a['reason']}")
                                         for a in remit["adjustments"]]]:
                n += 1
                ft1 = _fields({1: str(n), 2: remit["source_id"] if kind == "PY" else f"{remit['source_id']}-{code}",
                               3: remit["claim_id"], 4: paid_on.replace("-", ""), 5: paid_on.replace("-", ""),
                               6: kind, 7: f"{code}^^L", 10: "1", 11: f"{-Decimal(amount)}&USD",
                               13: remit["payer_name"], 23: charge["source_id"],
                               25: f"{charge['procedure_code']}^^CPT"})
                segments.append(_segment("FT1", *ft1))
        segments.append(self.in1(mrn))
        return when, "\r".join(segments)


def _files(records: Sequence[Record], options: RenderOptions) -> Iterator[Rendered]:
    w = _Writer(records, options)
    families: dict[str, list[Timed]] = defaultdict(list)
    for r in records:
        if r["kind"] == "appointment":
            families["siu"] += w.scheduling(r)
        elif r["kind"] == "referral":
            families["ref"].append(w.referral(r))
    encounters = _index(records, "encounter")
    charges_by_encounter: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        if r["kind"] == "charge":
            charges_by_encounter[r["encounter_source_id"]].append(r)
    for encounter_id, lines in charges_by_encounter.items():
        families["dft"].append(w.charges(encounters[encounter_id], lines))
    charges = _index(records, "charge")
    paid: dict[tuple[str, str], list[tuple[Record, Record]]] = defaultdict(list)
    for r in records:
        if r["kind"] == "remittance":
            charge = charges[r["charge_source_id"]]
            paid[(charge["encounter_source_id"], r["paid_on"])].append((r, charge))
    for (encounter_id, paid_on), pays in paid.items():
        families["pay"].append(w.payments(encounters[encounter_id], paid_on, pays))
    for family, messages in families.items():
        if options.shuffled:
            texts = [text for _, text in sorted(messages, key=lambda m: m[0])]
            random.Random(f"{options.practice}:{family}").shuffle(texts)
            yield Rendered(f"backfill/{family}.hl7", _batch(texts))
            continue
        by_month: dict[str, list[str]] = defaultdict(list)
        for when, text in sorted(messages, key=lambda m: m[0]):
            by_month[f"{when:%Y-%m}"].append(text)
        for month, texts in sorted(by_month.items()):
            yield Rendered(f"{month}/{family}.hl7", _batch(texts))


def _batch(texts: list[str]) -> bytes:
    """Messages one after the other, each ended by CR LF (what ``split`` cuts at each MSH)."""
    return ("\r\n".join(texts) + "\r\n").encode()
