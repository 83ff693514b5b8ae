"""FHIR R4 resources → common-model records, mapped by hand from the (validated) JSON.

One function per resource type; each yields records. Decisions where the model is silent:
- ``source_id`` is the resource's logical id (or, for a Bundle entry without one, the id in
  its ``fullUrl``). Claim and ChargeItem both give ``charge``; ClaimResponse and
  ExplanationOfBenefit both give ``remittance``: a Claim gives one charge per item
  (``<claim id>-<item sequence>``), a ChargeItem one charge (its id); a ClaimResponse or
  EOB gives one remittance per adjudicated item (``<id>-<item sequence>``, pointing at the
  charge ``<claim id>-<sequence>``), or one for the whole claim when it has no items.
- Organization has no kind of its own: it names payers (Coverage.payor, Claim.insurer,
  ClaimResponse/EOB.insurer) when it is in the same payload; otherwise the reference's
  ``display`` is used. Schedule likewise yields nothing itself: it gives its Slots their
  provider and location.
- PractitionerRole gives the ``provider`` of the practitioner it names (specialty from the
  role); references to a role resolve to that practitioner.
- A date-time with an offset is kept as sent. One with a time but no offset (invalid in strict
  FHIR, sent by real systems) is a wall-clock time of the practice: it is emitted without an
  offset (``2025-03-01T09:30:00``) for the hub to read in the practice's zone, or in the
  connector's ``timezone`` setting when one is set (an override for this feed).
- ``event_time`` of every record: its resource's ``meta.lastUpdated``, else the Bundle's
  ``timestamp``, else none (the hub uses the arrival time). A provider merged from a
  Practitioner and its PractitionerRole takes the later of the two.
- Money comes as JSON numbers; they are read through their shortest decimal text, so
  ``135.57`` stays ``"135.57"``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hub.errors import ValidationError

from .bundle import Item, References, Target

NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
Record = dict[str, Any]
_OFFSET = re.compile(r"(Z|[+-]\d\d:\d\d)$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")

# category codes of ClaimResponse / EOB adjudication (http://terminology.hl7.org/CodeSystem/adjudication
# and the CARIN BB adjudication codes)
PATIENT_RESPONSIBILITY = {"deductible": "1", "copay": "3", "coinsurance": "2"}
_PATIENT_SHARE = frozenset(PATIENT_RESPONSIBILITY)
_PAID = frozenset({"benefit", "paidtoprovider"})
_WRITTEN_OFF = frozenset({"denied", "noncovered", "discount", "memberliability"})
CENT = Decimal("0.01")
# Coverage.type codes that say the financial class outright; anything else is left to the mapping
FINANCIAL_CLASS_BY_CODE = {"pay": "self_pay", "SELFPAY": "self_pay", "1": "medicare", "2": "medicaid",
                           "5": "commercial", "6": "commercial", "81": "self_pay", "MCPOL": "commercial",
                           "HMO": "commercial", "PPO": "commercial", "POS": "commercial"}
REFERRAL_CATEGORY_CODES = {"3457005", "306206005", "referral"}  # SNOMED patient referral, referral to service
PERSON_TYPES = ("Patient", "RelatedPerson")
ENCOUNTER_STATUS = {"triaged": "arrived", "onleave": "in-progress"}


class MapContext:
    """What a mapper needs beside the resource: the payload's references, the item, the zone."""

    __slots__ = ("refs", "item", "timezone", "source_id")

    def __init__(self, refs: References, item: Item, timezone: ZoneInfo | None = None) -> None:
        self.refs = refs
        self.item = item
        self.timezone = timezone
        self.source_id = item.source_id

    def resolve(self, ref: Any) -> Target | None:
        return self.refs.resolve(ref, self.item.resource, self.source_id)

    def ref_id(self, ref: Any, *types: str) -> str | None:
        target = self.resolve(ref)
        if target is None or (types and target.type is not None and target.type not in types):
            return None
        return target.source_id

    def provider(self, ref: Any) -> tuple[str | None, str | None]:
        """(provider source id, NPI) for a reference to a Practitioner or PractitionerRole."""
        target = self.resolve(ref)
        if target is None or target.type not in (None, "Practitioner", "PractitionerRole"):
            return None, None
        npi = npi_of(target.resource)
        if target.type == "PractitionerRole" and target.resource is not None:
            practitioner = self.refs.resolve(target.resource.get("practitioner"), target.resource, target.source_id)
            if practitioner is not None:
                return practitioner.source_id, npi_of(practitioner.resource) or npi
        return target.source_id, npi

    def datetime(self, value: Any) -> str | None:
        """A FHIR dateTime/instant with its time: as sent when it has an offset, else naive (or in the
        connector's ``timezone`` override)."""
        if not isinstance(value, str) or len(value) <= 10 or "T" not in value:
            return None  # a date alone is not a point in time
        if _OFFSET.search(value):
            return value
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
        if moment.tzinfo is None and self.timezone is not None:
            moment = moment.replace(tzinfo=self.timezone)
        return moment.isoformat()

    def payer_name(self, ref: Any) -> str | None:
        target = self.resolve(ref)
        if target is not None and target.type in PERSON_TYPES:
            return None  # a person paying: their name or id is patient data, not a payer
        if target is not None and target.resource is not None and isinstance(target.resource.get("name"), str):
            return target.resource["name"]  # type: ignore[no-any-return]
        display = ref.get("display") if isinstance(ref, dict) else None
        if isinstance(display, str) and display:
            return display
        return target.source_id if target is not None else None


def event_time(resource: dict[str, Any], ctx: MapContext, bundle_timestamp: str | None) -> str | None:
    """When the resource was last changed (``meta.lastUpdated``), else when its Bundle was made."""
    meta = resource.get("meta")
    updated = ctx.datetime(meta.get("lastUpdated")) if isinstance(meta, dict) else None
    return updated or ctx.datetime(bundle_timestamp)


def timezone_of(name: Any) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"the fhir connector setting timezone={str(name)[:60]!r} is not an IANA time zone",
                              location="connectors.fhir.timezone") from None


# ---------------------------------------------------------------- small readers
def date(value: Any) -> str | None:
    return value[:10] if isinstance(value, str) and _DATE.match(value) else None


def first(values: Any) -> Any:
    return values[0] if isinstance(values, list) and values else None


def code(concept: Any) -> str | None:
    """The first coding's code of a CodeableConcept, else its text."""
    if not isinstance(concept, dict):
        return None
    for coding in concept.get("coding") or ():
        if isinstance(coding, dict) and coding.get("code"):
            return str(coding["code"])
    text = concept.get("text")
    return text if isinstance(text, str) and text else None


def codes(concept: Any) -> set[str]:
    if not isinstance(concept, dict):
        return set()
    return {str(c["code"]) for c in concept.get("coding") or () if isinstance(c, dict) and c.get("code")}


def money(value: Any) -> Decimal | None:
    amount = value.get("value") if isinstance(value, dict) else None
    if isinstance(amount, bool) or not isinstance(amount, int | float | str):
        return None
    try:
        return Decimal(repr(amount) if isinstance(amount, float) else str(amount))
    except InvalidOperation:
        return None


def money_text(amount: Decimal | None) -> str | None:
    return None if amount is None else str(amount.quantize(CENT))


def number(value: Any) -> int | None:
    if isinstance(value, dict):
        value = value.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def npi_of(resource: dict[str, Any] | None) -> str | None:
    for ident in (resource or {}).get("identifier") or ():
        if isinstance(ident, dict) and ident.get("system") == NPI_SYSTEM and ident.get("value"):
            return str(ident["value"])
    return None


def human_name(resource: dict[str, Any]) -> tuple[str | None, str | None]:
    names = [n for n in resource.get("name") or () if isinstance(n, dict)]
    name = next((n for n in names if n.get("use") == "official"), first(names)) or {}
    given = first(name.get("given"))
    family = name.get("family")
    return (family if isinstance(family, str) else None), (given if isinstance(given, str) else None)


def minutes_between(start: Any, end: Any) -> int | None:
    try:
        delta = dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)
    except (TypeError, ValueError):
        return None
    return int(delta.total_seconds() // 60)


def require_id(ctx: MapContext) -> str:
    sid = ctx.source_id
    if not sid:
        raise ValidationError(f"{ctx.item.type} has neither an id nor a fullUrl to take its source id from",
                              location=f"{ctx.item.path}.id")
    return sid


# ---------------------------------------------------------------- resources
def patient(res: dict[str, Any], ctx: MapContext) -> Iterator[Record]:
    family, given = human_name(res)
    identifiers = []
    for ident in res.get("identifier") or ():
        if isinstance(ident, dict) and ident.get("value"):
            identifiers.append({"system": ident.get("system"), "value": str(ident["value"]),
                                "type": code(ident.get("type"))})
    address = first([a for a in res.get("address") or () if isinstance(a, dict)]) or {}
    phone = next((t.get("value") for t in res.get("telecom") or ()
                  if isinstance(t, dict) and t.get("system") == "phone"), None)
    yield {"kind": "patient", "source_id": require_id(ctx), "identifiers": identifiers or None,
           "family_name": family, "given_name": given, "birth_date": date(res.get("birthDate")),
           "sex": res.get("gender"), "postal_code": address.get("postalCode"), "phone": phone}


def practitioner(res: dict[str, Any], ctx: MapContext) -> Iterator[Record]:
    family, given = human_name(res)
    yield {"kind": "provider", "source_id": require_id(ctx), "npi": npi_of(res), "family_name": family,
           "given_name": given}


def practitioner_role(res: dict[str, Any], ctx: MapContext) -> Iterator[Record]:
    source_id, npi = ctx.provider(res.get("practitioner"))
    if source_id is None:  # a role without a practitioner still stands for a provider
        source_id, npi = require_id(ctx), npi_of(res)
    yield {"kind": "provider", "source_id": source_id, "npi": npi or npi_of(res),
           "specialty": code(first(res.get("specialty")))}


def location(res: dict[str, Any], ctx: MapContext) -> Iterator[Record]:
    yield {"kind": "location", "source_id": require_id(ctx), "name": res.get("name")}


def appointment(res: dict[str, Any], ctx: MapContext) -> Iterator[Record]:
    patient_id = provider_id = npi = location_id = None
    for part in res.get("participant") or ():
        actor = part.get("actor") if isinstance(part, dict) else None
        target = ctx.resolve(actor)
        if target is None:
            continue
        if target.type == "Patient" and patient_id is None:
            patient_id = target.source_id
        elif target.type in ("Practitioner", "PractitionerRole") and provider_id is None:
            provider_id, npi = ctx.provider(actor)
        elif target.type == "Location" and location_id is None:
            location_id = target.source_id
    start = ctx.datetime(res.get("start"))
    duration = res.get("minutesDuration") if isinstance(res.get("minutesDuration"), int) else None
    if duration is None and start:
        duration = minutes_between(res.get("start"), res.get("end"))
    referral = next((t.source_id for t in map(ctx.resolve, res.get("basedOn") or ())
                     if t is not None and t.type in (None, "ServiceRequest")), None)
    yield {"kind": "appointment", "source_id": require_id(ctx), "patient_source_id": patient_id,
           "provider_source_id": provider_id, "provider_npi": npi, "location_source_id": location_id,
           "start": start, "duration_min": duration,
           "visit_type": code(first(res.get("serviceType"))) or code(res.get("appointmentType")),
           "status": res.get("status"), "cancel_reason": code(res.get("cancelationReason")),
           "booked_at": ctx.datetime(res.get("created")), "referral_source_id": referral}


def encounter(res: dict[str, Any], ctx: MapContext) -> Iterator[Record]:
    provider_id = None
    for part in res.get("participant") or ():
        if isinstance(part, dict):
            provider_id, _ = ctx.provider(part.get("individual"))
            if provider_id:
                break
    period = res.get("period") if isinstance(res.get("period"), dict) else {}
    place = first(res.get("location"))
    status = res.get("status")
    klass = res.get("class")
    yield {"kind": "encounter", "source_id": require_id(ctx),
           "patient_source_id": ctx.ref_id(res.get("subject"), "Patient"), "provider_source_id": provider_id,
           "appointment_source_id": ctx.ref_id(first(res.get("appointment")), "Appointment"),
           "location_source_id": ctx.ref_id(place.get("location") if isinstance(place, dict) else None,
                                            "Location"),
           "start": ctx.datetime(period.get("start")), "end": ctx.datetime(period.get("end")),
           "status": ENCOUNTER_STATUS.get(status, status),
           "visit_type": code(first(res.get("type"))) or (klass.get("code") if isinstance(klass, dict) else None)}


def service_request(res: dict[str, Any], ctx: MapContext) -> Iterator[Record]:
    categories = [c for c in res.get("category") or () if isinstance(c, dict)]
    is_referral = any(codes(c) & REFERRAL_CATEGORY_CODES or "referral" in str(c.get("text") or "").lower()
                      for c in categories)
    if not is_referral:
        return  # an order, not a referral: nothing in the common model
    requester = ctx.resolve(res.get("requester"))
    referring = None
    if requester is not None:
        source_id, npi = ctx.provider(res.get("requester"))
        referring = npi or source_id or requester.source_id
    status = res.get("status")
    yield {"kind": "referral", "source_id": require_id(ctx),
           "patient_source_id": ctx.ref_id(res.get("subject"), "Patient"), "referring_provider": referring,
           "specialty": code(res.get("performerType")) or code(res.get("code")),
           "received_on": date(res.get("authoredOn")), "status": status}


def coverage(res: dict[str, Any], ctx: MapContext) -> Iterator[Record]:
    member_id = res.get("subscriberId")
    for ident in res.get("identifier") or ():
        if isinstance(ident, dict) and "MB" in codes(ident.get("type")) and ident.get("value"):
            member_id = ident["value"]
    kind_codes = codes(res.get("type"))
    financial = next((FINANCIAL_CLASS_BY_CODE[c] for c in sorted(kind_codes) if c in FINANCIAL_CLASS_BY_CODE), None)
    payor = ctx.resolve(first(res.get("payor")))
    if financial is None and payor is not None and payor.type in PERSON_TYPES:
        financial = "self_pay"  # the patient or a relative pays
    order = res.get("order")
    yield {"kind": "coverage", "source_id": require_id(ctx),
           "patient_source_id": ctx.ref_id(res.get("beneficiary"), "Patient"),
           "payer_name": ctx.payer_name(first(res.get("payor"))), "financial_class": financial,
           "member_id": member_id, "rank": order if isinstance(order, int) else None}


def claim(res: dict[str, Any], ctx: MapContext) -> Iterator[Record]:
    claim_id = require_id(ctx)
    diagnoses = {d.get("sequence"): code(d.get("diagnosisCodeableConcept"))
                 for d in res.get("diagnosis") or () if isinstance(d, dict)}
    care_team = {c.get("sequence"): c.get("provider") for c in res.get("careTeam") or () if isinstance(c, dict)}
    default_provider, _ = ctx.provider(res.get("provider"))
    billable = res.get("billablePeriod") if isinstance(res.get("billablePeriod"), dict) else {}
    payer = ctx.payer_name(res.get("insurer"))
    for n, item in enumerate(res.get("item") or ()):
        if not isinstance(item, dict):
            continue
        provider_id = default_provider
        for seq in item.get("careTeamSequence") or ():
            provider_id = ctx.provider(care_team.get(seq))[0] or provider_id
            break
        amount = money(item.get("net"))
        if amount is None and money(item.get("unitPrice")) is not None:
            amount = money(item.get("unitPrice")) * Decimal(str(number(item.get("quantity")) or 1))  # type: ignore[operator]
        served = item.get("servicedPeriod") if isinstance(item.get("servicedPeriod"), dict) else {}
        product = item.get("productOrService")
        links = [d for s in item.get("diagnosisSequence") or () if (d := diagnoses.get(s))]
        yield {"kind": "charge", "source_id": f"{claim_id}-{item.get('sequence', n + 1)}",
               "encounter_source_id": ctx.ref_id(first(item.get("encounter")), "Encounter"),
               "patient_source_id": ctx.ref_id(res.get("patient"), "Patient"), "provider_source_id": provider_id,
               "location_source_id": ctx.ref_id(item.get("locationReference"), "Location"),
               "service_date": date(item.get("servicedDate")) or date(served.get("start"))
               or date(billable.get("start")) or date(res.get("created")),
               "posted_on": date(res.get("created")), "procedure_code": code(product),
               "modifiers": [m for m in map(code, item.get("modifier") or ()) if m] or None,
               "units": number(item.get("quantity")), "amount": money_text(amount),
               "diagnosis_codes": links or [d for d in diagnoses.values() if d] or None, "payer_name": payer}


def charge_item(res: dict[str, Any], ctx: MapContext) -> Iterator[Record]:
    period = res.get("occurrencePeriod") if isinstance(res.get("occurrencePeriod"), dict) else {}
    performer = first(res.get("performer"))
    amount = money(res.get("priceOverride"))
    yield {"kind": "charge", "source_id": require_id(ctx),
           "encounter_source_id": ctx.ref_id(res.get("context"), "Encounter"),
           "patient_source_id": ctx.ref_id(res.get("subject"), "Patient"),
           "provider_source_id": ctx.provider(performer.get("actor") if isinstance(performer, dict) else None)[0],
           "service_date": date(res.get("occurrenceDateTime")) or date(period.get("start")),
           "posted_on": date(res.get("enteredDate")), "procedure_code": code(res.get("code")),
           "units": number(res.get("quantity")), "amount": money_text(amount),
           "diagnosis_codes": [c for c in map(code, res.get("reason") or ()) if c] or None}


def _adjudicate(adjudications: Any) -> dict[str, Any]:
    """Adjudication lines → submitted, eligible, paid and the adjustments [{group, reason, amount}]."""
    out: dict[str, Any] = {"submitted": None, "eligible": None, "paid": None, "adjustments": [], "reasons": []}
    for adj in adjudications or ():
        if not isinstance(adj, dict):
            continue
        category = codes(adj.get("category"))
        amount = money(adj.get("amount"))
        reason = code(adj.get("reason"))
        if reason:
            out["reasons"].append(reason)
        if amount is None:
            continue
        if "submitted" in category:
            out["submitted"] = amount
        elif "eligible" in category:
            out["eligible"] = amount
        elif not _PAID.isdisjoint(category):
            out["paid"] = (out["paid"] or Decimal(0)) + amount if "paidtoprovider" in category else amount
        elif not _PATIENT_SHARE.isdisjoint(category):
            default = PATIENT_RESPONSIBILITY[next(iter(category & _PATIENT_SHARE))]
            out["adjustments"].append({"group": "PR", "reason": reason or default, "amount": money_text(amount)})
        elif reason or not _WRITTEN_OFF.isdisjoint(category):
            group = "PR" if "memberliability" in category else "CO"
            out["adjustments"].append({"group": group, "reason": reason or next(iter(sorted(category)), None),
                                       "amount": money_text(amount)})
    if out["submitted"] is not None and out["eligible"] is not None and out["submitted"] > out["eligible"] \
            and not any(a["group"] == "CO" for a in out["adjustments"]):
        # what the payer does not allow is the contractual write-off (CARC 45)
        out["adjustments"].append({"group": "CO", "reason": "45",
                                   "amount": money_text(out["submitted"] - out["eligible"])})
    return out


def remittance(res: dict[str, Any], ctx: MapContext) -> Iterator[Record]:
    own_id = require_id(ctx)
    claim_ref = res.get("claim") if res["resourceType"] == "ExplanationOfBenefit" else res.get("request")
    claim_id = ctx.ref_id(claim_ref, "Claim")
    payment = res.get("payment") if isinstance(res.get("payment"), dict) else {}
    paid_on = date(payment.get("date")) or date(res.get("created"))
    payer = ctx.payer_name(res.get("insurer"))
    claim_denied = res.get("outcome") == "error"
    items = [i for i in res.get("item") or () if isinstance(i, dict)]
    base = {"kind": "remittance", "claim_id": claim_id or own_id, "payer_name": payer, "paid_on": paid_on}
    if not items:
        totals = _adjudicate(res.get("total"))
        paid = totals["paid"] if totals["paid"] is not None else money(payment.get("amount"))
        yield {**base, "source_id": own_id, "paid_amount": money_text(paid),
               "adjustments": totals["adjustments"] or None,
               "adjustment_amount": _sum(totals["adjustments"]), "denied": claim_denied}
        return
    for n, item in enumerate(items):
        seq = item.get("itemSequence", item.get("sequence", n + 1))
        result = _adjudicate(item.get("adjudication"))
        paid = result["paid"]
        denied = claim_denied or (paid is not None and paid == 0 and bool(result["reasons"] or result["adjustments"]))
        yield {**base, "source_id": f"{own_id}-{seq}",
               "charge_source_id": f"{claim_id}-{seq}" if claim_id else None,
               "paid_amount": money_text(paid), "adjustments": result["adjustments"] or None,
               "adjustment_amount": _sum(result["adjustments"]), "denied": denied}


def _sum(adjustments: list[dict[str, Any]]) -> str | None:
    if not adjustments:
        return None
    return money_text(sum((Decimal(a["amount"]) for a in adjustments), Decimal(0)))


def slot(res: dict[str, Any], ctx: MapContext) -> Iterator[Record]:
    provider_id = location_id = None
    schedule = ctx.resolve(res.get("schedule"))
    if schedule is not None and schedule.resource is not None:
        # the schedule's actors are resolved as references made by the schedule
        in_schedule = MapContext(ctx.refs, Item(schedule.resource, ctx.item.path, schedule.full_url), ctx.timezone)
        for actor in schedule.resource.get("actor") or ():
            target = in_schedule.resolve(actor)
            if target is None:
                continue
            if target.type in ("Practitioner", "PractitionerRole") and provider_id is None:
                provider_id = in_schedule.provider(actor)[0]
            elif target.type == "Location" and location_id is None:
                location_id = target.source_id
    yield {"kind": "slot", "source_id": require_id(ctx), "provider_source_id": provider_id,
           "location_source_id": location_id, "start": ctx.datetime(res.get("start")),
           "duration_min": minutes_between(res.get("start"), res.get("end")), "status": res.get("status")}


def nothing(res: dict[str, Any], ctx: MapContext) -> Iterator[Record]:
    return iter(())  # read for references only (payer names, slot schedules)


MAPPERS: dict[str, Callable[[dict[str, Any], MapContext], Iterator[Record]]] = {
    "Patient": patient,
    "Practitioner": practitioner,
    "PractitionerRole": practitioner_role,
    "Organization": nothing,
    "Location": location,
    "Appointment": appointment,
    "Encounter": encounter,
    "ServiceRequest": service_request,
    "Coverage": coverage,
    "Claim": claim,
    "ChargeItem": charge_item,
    "ClaimResponse": remittance,
    "ExplanationOfBenefit": remittance,
    "Schedule": nothing,
    "Slot": slot,
}


def merge(records: list[Record]) -> list[Record]:
    """One record per (kind, source_id): a Practitioner and its PractitionerRole make one provider."""
    merged: dict[tuple[str, str], Record] = {}
    for record in records:
        key = (record["kind"], record["source_id"])
        clean = {k: v for k, v in record.items() if v is not None}
        if key in merged:
            before = merged[key].get("event_time")
            merged[key].update(clean)
            if before is not None:
                merged[key]["event_time"] = _later(before, clean.get("event_time"))
        else:
            merged[key] = clean
    return list(merged.values())


def _later(first: str, second: str | None) -> str:
    """The later of two event times; the second when they cannot be compared (one naive, one not)."""
    if second is None:
        return first
    try:
        return first if dt.datetime.fromisoformat(first) > dt.datetime.fromisoformat(second) else second
    except (TypeError, ValueError):
        return second
