"""Common-model records written as FHIR R4 transaction Bundles (``FhirConnector.render``): samples, never ingest.

One Bundle per day (``2025-03/2025-03-04.json``), assembled in the evening (its ``timestamp`` is
23:00 local time, the event time of whatever carries no ``meta``), with what the practice's system
learnt that day: the Locations and Practitioners (on the first day), Schedules and Slots, a
Patient and its Coverage when first seen (booked or referred), each Appointment once in its
final state (on the day that state is known, with ``meta.lastUpdated`` when it took it),
Encounters, ServiceRequests (referrals), Claims (charges, one per encounter) and
ExplanationOfBenefits (remittances). Every entry is a ``PUT`` of ``Type/id``.

Records read: ``location``, ``provider``, ``patient`` (its first identifier is the MRN's system; the
street line, phone and e-mail address when it has them),
``coverage``, ``slot``, ``appointment`` (with ``booked_at``, ``cancelled_at``), ``encounter``,
``referral``, ``charge`` (with ``posted_on``, ``payer_name``), ``remittance`` (with ``claim_id``,
``payer_name``). Hints on an appointment: ``_visit_name`` (the visit type's display text),
``_slots`` (the ids of the slots it takes), ``_final_at`` (when it took its final status: the
resource's ``meta.lastUpdated``).

Settings (``RenderOptions.settings``): ``namespace``, the URI prefix of the practice's own names
(``fullUrl`` ``{namespace}:Type/id``; local codes in the system ``{namespace}:codes``), default
``urn:sample:{practice}``. ``shuffled`` is not supported (a Bundle is one day's state).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hub.connector import Rendered, RenderOptions

Record = Mapping[str, Any]
Resource = dict[str, Any]

CPT = "http://www.ama-assn.org/go/cpt"
ADJUDICATION = "http://terminology.hl7.org/CodeSystem/adjudication"
CARC = "https://x12.org/codes/claim-adjustment-reason-codes"
CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"


def render_files(records: Sequence[Record], options: RenderOptions) -> list[Rendered]:
    if options.shuffled:
        raise NotImplementedError("the fhir connector renders one Bundle per day, never a shuffled backfill")
    return list(_Writer(records, options).files())


def _when(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def _index(records: Sequence[Record], kind: str) -> dict[str, Record]:
    return {r["source_id"]: r for r in records if r["kind"] == kind}


def _ref(kind: str, source_id: str) -> dict[str, str]:
    return {"reference": f"{kind}/{source_id}"}


def _coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def _iso(value: dt.datetime | str, times: str) -> str:
    """A FHIR dateTime: local time with its offset, or (``utc``) the instant in UTC, as many servers send it."""
    moment = _when(value) if isinstance(value, str) else value
    if times == "utc":
        return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.replace(tzinfo=None).isoformat() if times == "naive" else moment.isoformat()


def _instant(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _updated(resource: Resource, moment: dt.datetime) -> Resource:
    """meta.lastUpdated: when the resource took the state it is sent in (the record's event time). Only an
    Appointment has a history of states; every other resource takes its Bundle's timestamp as event time."""
    resource["meta"] = {"lastUpdated": _instant(moment)}
    return resource


def _appointment_day(a: Record) -> str:
    """An appointment is sent once, in its final state, on the day that state is known."""
    if a["status"] == "cancelled":
        return str(a["cancelled_at"])[:10]
    return str(a["start"])[:10]


def _mrn_identifiers(patient: Record) -> list[dict[str, Any]]:
    identifiers = patient.get("identifiers") or [{"value": patient["source_id"], "type": "MR"}]
    return [{**({"system": i["system"]} if i.get("system") else {}), "value": i["value"],
             **({"type": _coding(IDENTIFIER_TYPE, i["type"])} if i.get("type") else {})} for i in identifiers]


def _address(patient: Record) -> dict[str, Any]:
    """The patient's home address: its street line when known, and the postal code."""
    if not patient.get("address_line"):
        return {"postalCode": patient["postal_code"]}
    return {"use": "home", "line": [patient["address_line"]], "postalCode": patient["postal_code"]}


def _telecom(patient: Record) -> dict[str, Any]:
    """``telecom`` with the phone and the home e-mail address the patient has (none: no element)."""
    points = [{"system": "phone", "value": patient["phone"]}] if patient.get("phone") else []
    if patient.get("email"):
        points.append({"system": "email", "value": patient["email"], "use": "home"})
    return {"telecom": points} if points else {}


class _Writer:
    def __init__(self, records: Sequence[Record], options: RenderOptions) -> None:
        self.records, self.options = records, options
        self.times = options.times
        self.tz = ZoneInfo(options.timezone)
        self.namespace = str(options.settings.get("namespace") or f"urn:sample:{options.practice}")
        self.local = f"{self.namespace}:codes"

    def at(self, day: str, hour: int) -> dt.datetime:
        return dt.datetime.combine(dt.date.fromisoformat(day[:10]), dt.time(hour), tzinfo=self.tz)

    def files(self) -> Iterator[Rendered]:
        by_day: dict[str, dict[tuple[str, str], Resource]] = defaultdict(dict)
        for day, resource in self.resources():
            by_day[day].setdefault((resource["resourceType"], resource["id"]), resource)  # once per Bundle
        for day, resources in sorted(by_day.items()):
            # the day's Bundle is assembled in the evening: its timestamp is the event time of what has no meta
            bundle = {"resourceType": "Bundle", "id": f"{self.options.practice}-{day}", "type": "transaction",
                      "timestamp": _instant(self.at(day, 23)),
                      "entry": [{"fullUrl": f"{self.namespace}:{r['resourceType']}/{r['id']}", "resource": r,
                                 "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                                for r in resources.values()]}
            yield Rendered(f"{day[:7]}/{day}.json", json.dumps(bundle, separators=(",", ":")).encode())

    def resources(self) -> Iterator[tuple[str, Resource]]:
        """(day, resource) for each fact, the day being when the practice's system would send it."""
        records, times, local = self.records, self.times, self.local
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
                yield day, {"resourceType": "Patient", "id": mrn, "identifier": _mrn_identifiers(p),
                            "name": [{"family": p["family_name"], "given": [p["given_name"]]}], "gender": p["sex"],
                            "birthDate": p["birth_date"], "address": [_address(p)], **_telecom(p)}
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
                yield _appointment_day(r), self.appointment(r)
            elif kind == "encounter":
                yield r["start"][:10], {
                    "resourceType": "Encounter", "id": r["source_id"], "status": r["status"],
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                    "type": [_coding(local, r["visit_type"])], "subject": _ref("Patient", r["patient_source_id"]),
                    "participant": [{"individual": _ref("Practitioner", r["provider_source_id"])}],
                    "appointment": [_ref("Appointment", r["appointment_source_id"])],
                    "period": {"start": _iso(r["start"], times), "end": _iso(r["end"], times)},
                    "location": [{"location": _ref("Location", r["location_source_id"])}]}
            elif kind == "referral":
                yield r["received_on"], {
                    "resourceType": "ServiceRequest", "id": r["source_id"], "status": r["status"],
                    "intent": "order",
                    "category": [_coding("http://snomed.info/sct", "3457005", "Patient referral")],
                    "code": _coding("http://snomed.info/sct", "306206005", "Referral to service"),
                    "subject": _ref("Patient", r["patient_source_id"]), "authoredOn": r["received_on"],
                    "requester": {"display": r["referring_provider"]},
                    "performerType": {"text": r["specialty"]}}
        yield from self.claims()

    def appointment(self, a: Record) -> Resource:
        times, local = self.times, self.local
        end = _when(a["start"]) + dt.timedelta(minutes=a["duration_min"])
        visit, name = a["visit_type"], a.get("_visit_name", a["visit_type"])
        resource: Resource = {
            "resourceType": "Appointment", "id": a["source_id"], "status": a["status"],
            "appointmentType": _coding(local, visit, name), "serviceType": [_coding(local, visit, name)],
            "start": _iso(a["start"], times), "end": _iso(end, times), "minutesDuration": a["duration_min"],
            "created": _iso(a["booked_at"], times), "slot": [_ref("Slot", s) for s in a.get("_slots", ())],
            "participant": [{"actor": _ref("Patient", a["patient_source_id"]), "status": "accepted"},
                            {"actor": _ref("Practitioner", a["provider_source_id"]), "status": "accepted"},
                            {"actor": _ref("Location", a["location_source_id"]), "status": "accepted"}]}
        if a.get("referral_source_id"):
            resource["basedOn"] = [_ref("ServiceRequest", a["referral_source_id"])]
        if a["status"] == "cancelled":
            resource["cancelationReason"] = _coding(local, a["cancel_reason"])
            resource["extension"] = [{
                "url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment.cancellationDate",
                "valueDateTime": _iso(a["cancelled_at"], times)}]
        return _updated(resource, _when(a["_final_at"]))

    def claims(self) -> Iterator[tuple[str, Resource]]:
        lines: dict[str, list[Record]] = defaultdict(list)
        remits: dict[str, list[Record]] = defaultdict(list)
        for r in self.records:
            if r["kind"] == "charge":
                lines[r["encounter_source_id"]].append(r)
            elif r["kind"] == "remittance":
                remits[r["claim_id"]].append(r)
        local = self.local
        for encounter_id, items in lines.items():
            first = items[0]
            claim_id = encounter_id
            total = sum((Decimal(c["amount"]) for c in items), Decimal("0"))
            yield first["posted_on"], {
                "resourceType": "Claim", "id": claim_id, "status": "active",
                "type": _coding(CLAIM_TYPE, "professional"), "use": "claim",
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
                          "locationCodeableConcept": _coding(local, c["location_source_id"]),
                          "encounter": [_ref("Encounter", encounter_id)]}
                         for n, c in enumerate(items, start=1)],
                "total": {"value": float(total), "currency": "USD"}}
            sequence = {c["source_id"]: n for n, c in enumerate(items, start=1)}
            for remit in remits.get(claim_id, []):
                charged = next(c for c in items if c["source_id"] == remit["charge_source_id"])
                submitted = Decimal(charged["amount"])
                yield remit["paid_on"], {
                    "resourceType": "ExplanationOfBenefit", "id": remit["source_id"], "status": "active",
                    "type": _coding(CLAIM_TYPE, "professional"),
                    "use": "claim", "patient": _ref("Patient", first["patient_source_id"]),
                    "created": remit["paid_on"],
                    "insurer": {"display": remit["payer_name"]},
                    "provider": _ref("Practitioner", first["provider_source_id"]),
                    "claim": _ref("Claim", claim_id), "outcome": "complete",
                    "insurance": [{"focal": True, "coverage": _ref("Coverage", f"{first['patient_source_id']}-1")}],
                    "item": [{"sequence": sequence[remit["charge_source_id"]],
                              "productOrService": _coding(CPT, charged["procedure_code"]),
                              "adjudication": _adjudication(submitted, remit)}],
                    "payment": {"date": remit["paid_on"],
                                "amount": {"value": float(Decimal(remit["paid_amount"])), "currency": "USD"}},
                    "total": [{"category": _coding(ADJUDICATION, "submitted"),
                               "amount": {"value": float(submitted), "currency": "USD"}}]}


def _adjudication(submitted: Decimal, remit: Record) -> list[dict[str, Any]]:
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
