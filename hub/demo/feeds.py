"""Render the generator's facts as the files each practice's systems would send.

- HL7 v2.5.1 (``hl7v2`` practices): SIU^S12 when a visit is booked, then SIU^S14
  (filler status Complete), SIU^S15 (cancelled, with the reason in SCH-6) or SIU^S26
  (no-show); REF^I12 for referrals; DFT^P03 with charge FT1s (type CG) per visit and
  DFT^P03 payment FT1s (type PY, with adjustments as type AJ) when the payer pays.
  One batch file per practice and month and message family, messages separated by CR LF.
- FHIR R4 (``fhir`` practices): one transaction Bundle per working day with the day's
  Schedule/Slots, Patients, Coverage, Appointments, Encounters, ServiceRequests (referrals),
  Claims (charges) and ExplanationOfBenefits (remittances).
- CSV (``csv`` practices): monthly exports of appointments, charges, payments and referrals
  with the column names of the practice mapping (``mappings/examples/fishers-pt.yaml``).

A feed carries what the source system knows: the source codes, never the MSO's mapped
values, which come from the practice mapping at ingestion.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hub.demo.generator import PracticeSpec, Truth


@dataclass(frozen=True)
class FeedFile:
    """One file a practice sends: a relative name and its bytes."""

    name: str
    data: bytes


def render(truth: Truth, spec: PracticeSpec) -> list[FeedFile]:
    renderer = {"hl7v2": _hl7_files, "fhir": _fhir_files, "csv": _csv_files}[spec.feed]
    return list(renderer(truth, spec))


def _index(records: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {r["source_id"]: r for r in records if r["kind"] == kind}


def _when(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


# ==================================================================== HL7 v2.5.1
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


class _Hl7Writer:
    def __init__(self, spec: PracticeSpec, truth: Truth) -> None:
        self.spec = spec
        self.app = "DERMEHR" if spec.slug == "lakeshore-derm" else "SKINPM"
        self.facility = spec.slug.upper().replace("-", "")
        self.records = truth.records[spec.slug]
        self.patients = _index(self.records, "patient")
        self.coverage = {r["patient_source_id"]: r for r in self.records if r["kind"] == "coverage"}
        self.providers = _index(self.records, "provider")
        self.control = 0

    def ts(self, value: dt.datetime | str) -> str:
        return _ts(value, self.spec.feed_times)

    def msh(self, moment: dt.datetime | str, message_type: str) -> str:
        self.control += 1
        return _segment("MSH", "^~\\&", self.app, self.facility, "MSOHUB", "MSO", self.ts(moment), "", message_type,
                        f"{self.facility[:6]}{self.control:08d}", "P", "2.5.1")

    def pid(self, mrn: str) -> str:
        p = self.patients[mrn]
        return _segment("PID", "1", "", f"{mrn}^^^{self.facility}^MR", "", f"{p['family_name']}^{p['given_name']}",
                        "", p["birth_date"].replace("-", ""), {"female": "F", "male": "M"}.get(p["sex"], "U"),
                        "", "", f"^^^^{p['postal_code']}")

    def xcn(self, npi: str) -> str:
        p = self.providers[npi]
        return f"{npi}^{p['family_name']}^{p['given_name']}^^^^^^NPI^^^^NPI"

    def in1(self, mrn: str) -> str:
        c = self.coverage[mrn]
        return _segment("IN1", "1", c["payer_name"].replace(" ", "")[:10], c["payer_name"].replace(" ", "")[:10],
                        c["payer_name"], *[""] * 32, c["member_id"])

    def sch(self, a: dict[str, Any], filler_status: str, event_reason: str = "") -> list[str]:
        start, minutes = _when(a["start"]), a["duration_min"]
        end = start + dt.timedelta(minutes=minutes)
        values = {1: f"{a['source_id']}^{self.app}", 2: f"{a['source_id']}^{self.app}",
                  6: event_reason, 7: f"{a['visit_type']}^{a['_visit_name']}^L",
                  8: f"{a['visit_type']}^{a['_visit_name']}^L", 9: str(minutes), 10: "min",
                  11: f"^^{minutes}^{self.ts(start)}^{self.ts(end)}", 25: filler_status}
        segments = [_segment("SCH", *_fields(values)),
                    _segment("TQ1", "1", "", "", "", "", "", self.ts(start), self.ts(end)),
                    self.pid(a["patient_source_id"]),
                    _segment("PV1", "1", "O", f"{a['location_source_id']}^^^{self.facility}", "", "", "",
                             self.xcn(a["provider_source_id"]))]
        if a.get("referral_source_id"):
            segments.append(_segment("PV2", "", "", "", "", "", "", "", "", "", "", "", "", "",
                                     a["referral_source_id"]))
        segments += [_segment("RGS", "1", "A"),
                     _segment("AIS", "1", "A", f"{a['visit_type']}^{a['_visit_name']}^L", self.ts(start), "", "",
                              str(minutes), "min", "", filler_status),
                     _segment("AIL", "1", "A", f"{a['location_source_id']}^^^{self.facility}", "", self.ts(start),
                              "", "", str(minutes), "min", "", filler_status),
                     _segment("AIP", "1", "A", self.xcn(a["provider_source_id"]), "", self.ts(start), "", "",
                              str(minutes), "min", "", filler_status)]
        return segments

    def scheduling(self, a: dict[str, Any]) -> list[tuple[dt.datetime, str]]:
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

    def referral(self, r: dict[str, Any]) -> tuple[dt.datetime, str]:
        received = dt.datetime.combine(dt.date.fromisoformat(r["received_on"]), dt.time(9, 0), tzinfo=self.spec.tz)
        family, given, *_ = r["referring_provider"].split(" ")
        rf1 = _fields({1: "A^Accepted^HL70283", 2: "R^Routine^HL70280", 3: f"{self.spec.specialty}^^L",
                       5: "O^Outpatient^HL70284", 6: f"{r['source_id']}^{self.app}", 7: r["received_on"].replace(
                           "-", ""), 9: r["received_on"].replace("-", "")})
        return received, "\r".join([self.msh(received, "REF^I12^REF_I12"), _segment("RF1", *rf1),
                                    _segment("PRD", "RP^Referring Provider^HL70286", f"{family}^{given}^^^^MD"),
                                    self.pid(r["patient_source_id"])])

    def charges(self, encounter: dict[str, Any], lines: list[dict[str, Any]]) -> tuple[dt.datetime, str]:
        posted = dt.datetime.combine(dt.date.fromisoformat(lines[0]["posted_on"]), dt.time(18, 0),
                                     tzinfo=self.spec.tz)
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

    def pv1(self, encounter: dict[str, Any]) -> str:
        values = {1: "1", 2: "O", 3: f"{encounter['location_source_id']}^^^{self.facility}",
                  7: self.xcn(encounter["provider_source_id"]), 19: encounter["source_id"],
                  44: self.ts(encounter["start"]), 45: self.ts(encounter["end"])}
        return _segment("PV1", *_fields(values))

    def payments(self, encounter: dict[str, Any], paid_on: str, pays: list[tuple[dict[str, Any], dict[str, Any]]]
                 ) -> tuple[dt.datetime, str]:
        when = dt.datetime.combine(dt.date.fromisoformat(paid_on), dt.time(12, 0), tzinfo=self.spec.tz)
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


def _hl7_files(truth: Truth, spec: PracticeSpec) -> Iterator[FeedFile]:
    w = _Hl7Writer(spec, truth)
    records = truth.records[spec.slug]
    families: dict[str, list[tuple[dt.datetime, str]]] = defaultdict(list)
    for r in records:
        if r["kind"] == "appointment":
            families["siu"] += w.scheduling(r)
        elif r["kind"] == "referral":
            families["ref"].append(w.referral(r))
    encounters = _index(records, "encounter")
    charges_by_encounter: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["kind"] == "charge":
            charges_by_encounter[r["encounter_source_id"]].append(r)
    for encounter_id, lines in charges_by_encounter.items():
        families["dft"].append(w.charges(encounters[encounter_id], lines))
    charges = _index(records, "charge")
    paid: dict[tuple[str, str], list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(list)
    for r in records:
        if r["kind"] == "remittance":
            charge = charges[r["charge_source_id"]]
            paid[(charge["encounter_source_id"], r["paid_on"])].append((r, charge))
    for (encounter_id, paid_on), pays in paid.items():
        families["pay"].append(w.payments(encounters[encounter_id], paid_on, pays))
    for family, messages in families.items():
        if spec.backfill_shuffled:
            # a history backfill written in no particular order: a visit's completion, cancellation or
            # no-show can come before its booking, and a payment before its charge; each message says
            # when its event happened (MSH-7, EVN-2), and the latest event is the one that stands
            texts = [text for _, text in sorted(messages, key=lambda m: m[0])]
            random.Random(f"{spec.slug}:{family}").shuffle(texts)
            yield FeedFile(f"{spec.slug}/backfill/{family}.hl7", ("\r\n".join(texts) + "\r\n").encode())
            continue
        by_month: dict[str, list[str]] = defaultdict(list)
        for when, text in sorted(messages, key=lambda m: m[0]):
            by_month[f"{when:%Y-%m}"].append(text)
        for month, texts in sorted(by_month.items()):
            yield FeedFile(f"{spec.slug}/{month}/{family}.hl7", ("\r\n".join(texts) + "\r\n").encode())


# ==================================================================== FHIR R4
def _ref(kind: str, source_id: str) -> dict[str, str]:
    return {"reference": f"{kind}/{source_id}"}


def _coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


CPT = "http://www.ama-assn.org/go/cpt"
ADJUDICATION = "http://terminology.hl7.org/CodeSystem/adjudication"
CARC = "https://x12.org/codes/claim-adjustment-reason-codes"
LOCAL = "urn:demo:carmel-aesthetics:codes"


def _iso(value: dt.datetime | str, times: str) -> str:
    """A FHIR dateTime: local time with its offset, or (``utc``) the instant in UTC, as many servers send it."""
    moment = _when(value) if isinstance(value, str) else value
    if times == "utc":
        return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.replace(tzinfo=None).isoformat() if times == "naive" else moment.isoformat()


def _at(spec: PracticeSpec, day: str, hour: int) -> dt.datetime:
    return dt.datetime.combine(dt.date.fromisoformat(day[:10]), dt.time(hour), tzinfo=spec.tz)


def _instant(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _updated(resource: dict[str, Any], moment: dt.datetime) -> dict[str, Any]:
    """meta.lastUpdated: when the resource took the state it is sent in (the record's event time). Only an
    Appointment has a history of states; every other resource takes its Bundle's timestamp as event time."""
    resource["meta"] = {"lastUpdated": _instant(moment)}
    return resource


def _fhir_resources(spec: PracticeSpec, records: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(day, resource) for each fact, the day being when the practice's system would send it."""
    times = spec.feed_times
    patients = _index(records, "patient")
    coverage = {r["patient_source_id"]: r for r in records if r["kind"] == "coverage"}
    sent_patients: set[str] = set()
    first_day = min(r["start"][:10] for r in records if r["kind"] == "appointment")
    for r in records:
        if r["kind"] == "location":
            yield first_day, {"resourceType": "Location", "id": r["source_id"], "status": "active",
                              "name": r["name"]}
        elif r["kind"] == "provider":
            yield first_day, {"resourceType": "Practitioner", "id": r["source_id"],
                              "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": r["npi"]}],
                              "name": [{"family": r["family_name"], "given": [r["given_name"]]}]}
    for r in records:
        kind = r["kind"]
        if kind in ("appointment", "referral") and r["patient_source_id"] not in sent_patients:
            mrn = r["patient_source_id"]
            sent_patients.add(mrn)
            p, c = patients[mrn], coverage[mrn]
            day = r["booked_at"][:10] if kind == "appointment" else r["received_on"]
            yield day, {"resourceType": "Patient", "id": mrn,
                        "identifier": [{"system": f"urn:demo:{spec.slug}:mrn", "value": mrn,
                                        "type": _coding("http://terminology.hl7.org/CodeSystem/v2-0203", "MR")}],
                        "name": [{"family": p["family_name"], "given": [p["given_name"]]}], "gender": p["sex"],
                        "birthDate": p["birth_date"], "address": [{"postalCode": p["postal_code"]}]}
            yield day, {"resourceType": "Coverage", "id": c["source_id"], "status": "active",
                        "beneficiary": _ref("Patient", mrn), "subscriberId": c["member_id"], "order": c["rank"],
                        "payor": [{"display": c["payer_name"]}]}
        if kind == "slot":
            end = _when(r["start"]) + dt.timedelta(minutes=r["duration_min"])
            schedule = f"sched-{r['provider_source_id']}-{r['location_source_id']}"
            # the Schedule travels with its Slots: a transaction Bundle resolves its references inside itself
            yield r["start"][:10], {"resourceType": "Schedule", "id": schedule, "active": True,
                                    "actor": [_ref("Practitioner", r["provider_source_id"]),
                                              _ref("Location", r["location_source_id"])]}
            yield r["start"][:10], {"resourceType": "Slot", "id": r["source_id"], "status": r["status"],
                                    "schedule": _ref("Schedule", schedule), "start": _iso(r["start"], times),
                                    "end": _iso(end, times)}
        elif kind == "appointment":
            yield _appointment_day(r), _fhir_appointment(r, times)
        elif kind == "encounter":
            yield r["start"][:10], {
                "resourceType": "Encounter", "id": r["source_id"], "status": r["status"],
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "type": [_coding(LOCAL, r["visit_type"])], "subject": _ref("Patient", r["patient_source_id"]),
                "participant": [{"individual": _ref("Practitioner", r["provider_source_id"])}],
                "appointment": [_ref("Appointment", r["appointment_source_id"])],
                "period": {"start": _iso(r["start"], times), "end": _iso(r["end"], times)},
                "location": [{"location": _ref("Location", r["location_source_id"])}]}
        elif kind == "referral":
            yield r["received_on"], {
                "resourceType": "ServiceRequest", "id": r["source_id"], "status": r["status"], "intent": "order",
                "category": [_coding("http://snomed.info/sct", "3457005", "Patient referral")],
                "code": _coding("http://snomed.info/sct", "306206005", "Referral to service"),
                "subject": _ref("Patient", r["patient_source_id"]), "authoredOn": r["received_on"],
                "requester": {"display": r["referring_provider"]},
                "performerType": {"text": spec.specialty}}
    yield from _fhir_claims(records)


def _appointment_day(a: dict[str, Any]) -> str:
    """An appointment is sent once, in its final state, on the day that state is known."""
    if a["status"] == "cancelled":
        return str(a["cancelled_at"])[:10]
    return str(a["start"])[:10]


def _final_event(a: dict[str, Any]) -> dt.datetime:
    """When an appointment took its final status: booked, cancelled, or marked done or missed after the visit."""
    if a["status"] == "cancelled":
        return _when(a["cancelled_at"])
    if a["status"] in ("fulfilled", "noshow"):
        return _when(a["start"]) + dt.timedelta(minutes=a["duration_min"] + 30)
    return _when(a["booked_at"])


def _fhir_appointment(a: dict[str, Any], times: str) -> dict[str, Any]:
    end = _when(a["start"]) + dt.timedelta(minutes=a["duration_min"])
    resource: dict[str, Any] = {
        "resourceType": "Appointment", "id": a["source_id"], "status": a["status"],
        "appointmentType": _coding(LOCAL, a["visit_type"], a["_visit_name"]),
        "serviceType": [_coding(LOCAL, a["visit_type"], a["_visit_name"])],
        "start": _iso(a["start"], times), "end": _iso(end, times), "minutesDuration": a["duration_min"],
        "created": _iso(a["booked_at"], times), "slot": [_ref("Slot", s) for s in a["_slots"]],
        "participant": [{"actor": _ref("Patient", a["patient_source_id"]), "status": "accepted"},
                        {"actor": _ref("Practitioner", a["provider_source_id"]), "status": "accepted"},
                        {"actor": _ref("Location", a["location_source_id"]), "status": "accepted"}]}
    if a.get("referral_source_id"):
        resource["basedOn"] = [_ref("ServiceRequest", a["referral_source_id"])]
    if a["status"] == "cancelled":
        resource["cancelationReason"] = _coding(LOCAL, a["cancel_reason"])
        resource["extension"] = [{
            "url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment.cancellationDate",
            "valueDateTime": _iso(a["cancelled_at"], times)}]
    return _updated(resource, _final_event(a))


def _fhir_claims(records: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["kind"] == "charge":
            lines[r["encounter_source_id"]].append(r)
    remits: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["kind"] == "remittance":
            remits[r["claim_id"]].append(r)
    for encounter_id, items in lines.items():
        first = items[0]
        claim_id = encounter_id
        total = sum((Decimal(c["amount"]) for c in items), Decimal("0"))
        yield first["posted_on"], {
            "resourceType": "Claim", "id": claim_id, "status": "active",
            "type": _coding("http://terminology.hl7.org/CodeSystem/claim-type", "professional"), "use": "claim",
            "patient": _ref("Patient", first["patient_source_id"]), "created": first["posted_on"],
            "provider": _ref("Practitioner", first["provider_source_id"]),
            "insurer": {"display": first["payer_name"]},
            "priority": _coding("http://terminology.hl7.org/CodeSystem/processpriority", "normal"),
            "insurance": [{"sequence": 1, "focal": True,
                           "coverage": _ref("Coverage", f"{first['patient_source_id']}-1")}],
            "diagnosis": [{"sequence": 1, "diagnosisCodeableConcept": _coding(
                "http://hl7.org/fhir/sid/icd-10-cm", first["diagnosis_codes"][0])}],
            "item": [{"sequence": n, "productOrService": _coding(CPT, c["procedure_code"]),
                      **({"modifier": [_coding(CPT, m) for m in c["modifiers"]]} if c["modifiers"] else {}),
                      "servicedDate": c["service_date"], "quantity": {"value": c["units"]},
                      "unitPrice": {"value": float(Decimal(c["amount"]) / c["units"]), "currency": "USD"},
                      "net": {"value": float(Decimal(c["amount"])), "currency": "USD"},
                      "locationCodeableConcept": _coding(LOCAL, c["location_source_id"]),
                      "encounter": [_ref("Encounter", encounter_id)]}
                     for n, c in enumerate(items, start=1)],
            "total": {"value": float(total), "currency": "USD"}}
        sequence = {c["source_id"]: n for n, c in enumerate(items, start=1)}
        for remit in remits.get(claim_id, []):
            charged = next(c for c in items if c["source_id"] == remit["charge_source_id"])
            submitted = Decimal(charged["amount"])
            yield remit["paid_on"], {
                "resourceType": "ExplanationOfBenefit", "id": remit["source_id"], "status": "active",
                "type": _coding("http://terminology.hl7.org/CodeSystem/claim-type", "professional"),
                "use": "claim", "patient": _ref("Patient", first["patient_source_id"]), "created": remit["paid_on"],
                "insurer": {"display": remit["payer_name"]}, "provider": _ref("Practitioner",
                                                                             first["provider_source_id"]),
                "claim": _ref("Claim", claim_id), "outcome": "complete",
                "insurance": [{"focal": True, "coverage": _ref("Coverage", f"{first['patient_source_id']}-1")}],
                "item": [{"sequence": sequence[remit["charge_source_id"]],
                          "productOrService": _coding(CPT, charged["procedure_code"]),
                          "adjudication": _adjudication(submitted, remit)}],
                "payment": {"date": remit["paid_on"], "amount": {"value": float(Decimal(remit["paid_amount"])),
                                                                 "currency": "USD"}},
                "total": [{"category": _coding("http://terminology.hl7.org/CodeSystem/adjudication", "submitted"),
                           "amount": {"value": float(submitted), "currency": "USD"}}]}


def _adjudication(submitted: Decimal, remit: dict[str, Any]) -> list[dict[str, Any]]:
    """R4 adjudication lines: submitted, then eligible (allowed) and benefit (paid), or the denial and its CARC."""
    def line(category: str, amount: Decimal | str, reason: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"category": _coding(ADJUDICATION, category),
                               "amount": {"value": float(Decimal(amount)), "currency": "USD"}}
        if reason:
            out["reason"] = _coding(CARC, reason)
        return out

    lines = [line("submitted", submitted)]
    if remit["denied"]:
        lines += [line("denied", a["amount"], a["reason"]) for a in remit["adjustments"]]
        lines.append(line("benefit", "0"))
    else:
        lines += [line("eligible", remit["paid_amount"]), line("benefit", remit["paid_amount"])]
    return lines


def _fhir_files(truth: Truth, spec: PracticeSpec) -> Iterator[FeedFile]:
    by_day: dict[str, dict[tuple[str, str], dict[str, Any]]] = defaultdict(dict)
    for day, resource in _fhir_resources(spec, truth.records[spec.slug]):
        by_day[day].setdefault((resource["resourceType"], resource["id"]), resource)  # once per Bundle
    for day, resources in sorted(by_day.items()):
        # the day's Bundle is assembled in the evening: its timestamp is the event time of what has no meta
        bundle = {"resourceType": "Bundle", "id": f"{spec.slug}-{day}", "type": "transaction",
                  "timestamp": _instant(_at(spec, day, 23)),
                  "entry": [{"fullUrl": f"urn:demo:{spec.slug}:{r['resourceType']}/{r['id']}", "resource": r,
                             "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                            for r in resources.values()]}
        yield FeedFile(f"{spec.slug}/{day[:7]}/{day}.json", json.dumps(bundle, separators=(",", ":")).encode())


# ==================================================================== CSV exports
APPOINTMENT_COLUMNS = ("Appt ID", "MRN", "Patient Name", "DOB", "Provider", "Location", "Appt Date/Time",
                       "Minutes", "Appt Type", "Status", "Cancel Reason", "Created", "Cancelled On", "Referral ID",
                       "New Patient", "Modified")
CHARGE_COLUMNS = ("Charge ID", "Visit ID", "MRN", "Provider", "Location", "DOS", "Post Date", "CPT", "Modifiers",
                  "Units", "Charge Amount", "Dx", "Payer", "Appt Type", "Modified")
PAYMENT_COLUMNS = ("Payment ID", "Charge ID", "Claim ID", "Payer", "Paid", "Adjustment", "Adj Codes", "Denied",
                   "Paid Date", "Modified")
REFERRAL_COLUMNS = ("Referral ID", "MRN", "Referring Provider", "Received", "Referral Status", "Modified")
CSV_STATUS = {"fulfilled": "Completed", "noshow": "No Show", "cancelled": "Cancelled", "booked": "Scheduled"}


def _us_time(value: str | None) -> str:
    return _when(value).strftime("%m/%d/%Y %I:%M %p") if value else ""


def _modified(moment: dt.datetime) -> str:
    """The row's last change (the mapping's event_time_column): local wall-clock time, as exports write it."""
    return moment.strftime("%Y-%m-%d %H:%M")


def _csv_text(columns: tuple[str, ...], rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\r\n")
    out.writerow(columns)
    out.writerows(rows)
    return buffer.getvalue().encode()


def _csv_files(truth: Truth, spec: PracticeSpec) -> Iterator[FeedFile]:
    records = truth.records[spec.slug]
    patients = _index(records, "patient")
    months: dict[tuple[str, str], list[list[Any]]] = defaultdict(list)
    for r in records:
        if r["kind"] == "appointment":
            p = patients[r["patient_source_id"]]
            months[("appointments", r["start"][:7])].append([
                r["source_id"], r["patient_source_id"], f"{p['family_name']}, {p['given_name']}",
                dt.date.fromisoformat(p["birth_date"]).strftime("%m/%d/%Y"), r["provider_source_id"],
                r["location_source_id"], _us_time(r["start"]), r["duration_min"], r["visit_type"],
                CSV_STATUS[r["status"]], r["cancel_reason"] or "", _us_time(r["booked_at"]),
                _us_time(r["cancelled_at"]), r["referral_source_id"] or "", "Y" if r["new_patient"] else "N",
                _modified(_final_event(r))])
        elif r["kind"] == "charge":
            months[("charges", r["posted_on"][:7])].append([
                r["source_id"], r["encounter_source_id"], r["patient_source_id"], r["provider_source_id"],
                r["location_source_id"], r["service_date"], r["posted_on"], r["procedure_code"],
                " ".join(r["modifiers"]), r["units"], r["amount"], ";".join(r["diagnosis_codes"]), r["payer_name"],
                r["visit_type"], _modified(_at(spec, r["posted_on"], 18))])
        elif r["kind"] == "referral":
            months[("referrals", r["received_on"][:7])].append([
                r["source_id"], r["patient_source_id"], r["referring_provider"], r["received_on"],
                {"active": "Open", "completed": "Closed"}[r["status"]], _modified(_at(spec, r["received_on"], 9))])
        elif r["kind"] == "remittance":
            months[("payments", r["paid_on"][:7])].append([
                r["source_id"], r["charge_source_id"], r["claim_id"], r["payer_name"], r["paid_amount"],
                r["adjustment_amount"], ";".join(f"{a['group']}-{a['reason']}" for a in r["adjustments"]),
                "Y" if r["denied"] else "N", r["paid_on"], _modified(_at(spec, r["paid_on"], 12))])
    columns = {"appointments": APPOINTMENT_COLUMNS, "charges": CHARGE_COLUMNS, "payments": PAYMENT_COLUMNS,
               "referrals": REFERRAL_COLUMNS}
    for (export, month), rows in sorted(months.items()):
        yield FeedFile(f"{spec.slug}/{month}/{export}_{month}.csv", _csv_text(columns[export], rows))


# ==================================================================== the MSO's costs
def costs_csv(truth: Truth) -> str:
    """The costs the MSO's finance team imports (``hub costs import``), as that command's CSV."""
    lines = ["practice,service_line,month,cost"]
    lines += [f"{c['practice']},{c['service_line']},{c['month']},{c['cost']}" for c in truth.costs]
    return "\n".join(lines) + "\n"
