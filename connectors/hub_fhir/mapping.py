"""FHIR R4 resources → common-model records, mapped by hand from the (validated) JSON.

One function per resource type; each yields records. Decisions where the model is silent:
- ``source_id`` is the resource's logical id (or, for a Bundle entry without one, the id in
  its ``fullUrl``, else its business identifier: ``require_id``). Claim and ChargeItem both give
  ``charge``; ClaimResponse, ExplanationOfBenefit and PaymentReconciliation give ``remittance``:
  a Claim gives one charge per item (``<claim id>-<item sequence>``), a ChargeItem one charge
  (its id); a ClaimResponse or EOB gives one remittance per adjudicated item (``<id>-<item
  sequence>``, pointing at the charge ``<claim id>-<sequence>``) and per adjudicated ``addItem``,
  or one for the whole claim (header ``total`` and ``payment``) when no line carries an amount; a
  PaymentReconciliation one per ``payment`` detail (its claim's payment). A claim line without
  ``net`` is priced ``unitPrice`` × ``quantity``, else kept without amount (``unpriced``); a
  pre-authorization or predetermination is no charge (counted in the message's tally).
- Organization has no kind of its own: it names payers (Coverage.payor, Claim.insurer,
  ClaimResponse/EOB.insurer) when it is in the same payload; otherwise the reference's
  ``display`` is used. Schedule likewise yields nothing itself: it gives its Slots their
  provider and location. The message's notes say what they were used for.
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

from hub.connector import Tally
from hub.errors import ValidationError

from .bundle import NPI_SYSTEM, Item, References, Target, business_id

Record = dict[str, Any]
_OFFSET = re.compile(r"(Z|[+-]\d\d:\d\d)$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")

# category codes of ClaimResponse / EOB adjudication (http://terminology.hl7.org/CodeSystem/adjudication
# and the CARIN BB adjudication codes)
PATIENT_RESPONSIBILITY = {"deductible": "1", "copay": "3", "coinsurance": "2"}
_PATIENT_SHARE = frozenset(PATIENT_RESPONSIBILITY)
_WRITTEN_OFF = frozenset({"denied", "noncovered", "discount", "memberliability"})
# CARIN BB categories of money that is not the provider's payment nor an adjustment of it
_NOT_THE_PROVIDERS = frozenset({"paidbypatient", "paidbypatientcash", "paidbypatientother",
                                "paidbypatienthealthaccount", "paidtopatient", "priorpayerpaid", "drugcost"})
# CMS Blue Button adjudication codes (https://bluebutton.cms.gov/resources/variables/<name>) by the
# category of the base (http://terminology.hl7.org/CodeSystem/adjudication) or CARIN BB code system
BLUE_BUTTON_ADJUDICATION = "https://bluebutton.cms.gov/resources/codesystem/adjudication"
BLUE_BUTTON_VARIABLES = "https://bluebutton.cms.gov/resources/variables/"
BLUE_BUTTON = {
    "line_sbmtd_chrg_amt": "submitted", "rev_cntr_tot_chrg_amt": "submitted",
    "line_alowd_chrg_amt": "eligible",
    "line_prvdr_pmt_amt": "paidtoprovider", "rev_cntr_prvdr_pmt_amt": "paidtoprovider",
    "line_nch_pmt_amt": "benefit", "rev_cntr_pmt_amt_amt": "benefit",
    "line_bene_ptb_ddctbl_amt": "deductible", "rev_cntr_cash_ddctbl_amt": "deductible",
    "line_coinsrnc_amt": "coinsurance", "rev_cntr_coinsrnc_wge_adjstd_c": "coinsurance",
    "line_bene_pmt_amt": "paidtopatient", "rev_cntr_bene_pmt_amt": "paidtopatient",
    "line_bene_prmry_pyr_pd_amt": "priorpayerpaid", "line_prmry_pyr_pd_amt": "priorpayerpaid",
    "rev_cntr_ncvrd_chrg_amt": "noncovered",
}
CENT = Decimal("0.01")
# Coverage.type codes that say the financial class outright; anything else is left to the mapping
FINANCIAL_CLASS_BY_CODE = {"pay": "self_pay", "SELFPAY": "self_pay", "1": "medicare", "2": "medicaid",
                           "5": "commercial", "6": "commercial", "81": "self_pay", "MCPOL": "commercial",
                           "HMO": "commercial", "PPO": "commercial", "POS": "commercial"}
# SNOMED patient referral, referral to service, referral to specialist, for further care, and a plain "referral"
REFERRAL_CATEGORY_CODES = {"3457005", "306206005", "103696004", "183444007", "referral"}
# SNOMED laboratory procedure, imaging, diagnostic procedure: categories of orders, not referrals
ORDER_CATEGORY_CODES = {"108252007", "363679005", "103693007", "laboratory", "imaging"}
LOINC = "http://loinc.org"
NOT_BILLED = ("preauthorization", "predetermination")  # Claim.use of a request made ahead of care
UNSCHEDULED = ("proposed", "waitlist", "cancelled")  # Appointment statuses allowed without a start (app-3)
CANCELLATION_DATE = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment.cancellationDate"
ENCOUNTER_CLASSES = frozenset({"AMB", "EMER", "FLD", "HH", "IMP", "ACUTE", "NONAC", "OBSENC", "PRENC", "SS", "VR"})
ENCOUNTER_CLASS_NAMES = {"ambulatory": "AMB", "outpatient": "AMB", "emergency": "EMER", "inpatient": "IMP",
                         "inpatient encounter": "IMP", "virtual": "VR", "home health": "HH", "field": "FLD",
                         "observation encounter": "OBSENC", "pre-admission": "PRENC", "short stay": "SS"}
PERSON_TYPES = ("Patient", "RelatedPerson")
NOT_KEYED_BY_IDENTIFIER = frozenset({"Coverage"})  # see require_id
ENCOUNTER_STATUS = {"triaged": "arrived", "onleave": "in-progress"}


class MapContext:
    """What a mapper needs beside the resource: the payload's references, the item, the zone, and the
    message's tally (what was left out, and why: a pre-authorization, an appointment without a start)."""

    __slots__ = ("refs", "item", "timezone", "source_id", "tally")

    def __init__(self, refs: References, item: Item, timezone: ZoneInfo | None = None,
                 tally: Tally | None = None) -> None:
        self.refs = refs
        self.item = item
        self.timezone = timezone
        self.source_id = item.source_id
        self.tally = tally if tally is not None else Tally()

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
        npi = known_npi(target)
        if target.type == "PractitionerRole" and target.resource is not None:
            practitioner = self.refs.resolve(target.resource.get("practitioner"), target.resource, target.source_id)
            if practitioner is not None and practitioner.type in (None, "Practitioner"):
                return practitioner.source_id, known_npi(practitioner) or npi
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
        name = target.resource.get("name") if target is not None and target.resource is not None else None
        if isinstance(name, str):
            return name
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
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder ("America")
        raise ValidationError(f"the fhir connector setting timezone={str(name)[:60]!r} is not an IANA time zone",
                              location="connectors.fhir.timezone") from None


# ---------------------------------------------------------------- small readers
def date(value: Any) -> str | None:
    return value[:10] if isinstance(value, str) and _DATE.match(value) else None


def _dict(value: Any) -> dict[str, Any]:
    """An element that should be an object: itself, else an empty one."""
    return value if isinstance(value, dict) else {}


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


def known_npi(target: Target) -> str | None:
    """The NPI of a reference's target: from the resource in the payload, else the identifier the
    reference named it by (``Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|...``)."""
    if target.resource is not None:
        return npi_of(target.resource)
    return target.source_id if target.system == NPI_SYSTEM else None


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
    family = family if isinstance(family, str) and family.strip() else None
    given = given if isinstance(given, str) and given.strip() else None
    if family is None and given is None and isinstance(name.get("text"), str):
        return split_name_text(name["text"])
    return family, given


_TITLES = frozenset({"dr", "mr", "mrs", "ms", "miss", "mx", "prof", "rev", "sir"})
_SUFFIXES = frozenset({"md", "do", "dds", "dmd", "phd", "rn", "rnp", "np", "pa", "pa-c", "pt", "dpt", "ot", "od",
                       "lpn", "cnm", "crna", "facs", "jr", "sr", "ii", "iii", "iv"})
_CREDENTIALS = _SUFFIXES - {"jr", "sr", "ii", "iii", "iv", "phd"}  # a clinician's, after the name


def _bare(word: str) -> str:
    return word.strip(".,").lower()


def split_name_text(text: str) -> tuple[str | None, str | None]:
    """A name sent only as ``HumanName.text``: ``Family, Given`` when written so, else the last word is
    the family name and the words before it the given names; titles (Dr.) and suffixes (MD, Jr.) aside."""
    parts = [p.strip() for p in text.split(",")]
    while len(parts) > 1 and all(_bare(w) in _SUFFIXES for w in parts[-1].split()):
        parts.pop()  # "Paul Therapist, PT": a credential, not a given name
    if len(parts) > 1 and parts[0] and parts[1]:
        family, given = parts[0], " ".join(w for w in parts[1].split() if _bare(w) not in _TITLES)
        return family, given or None
    words = [w for w in parts[0].split() if w]
    while words and _bare(words[0]) in _TITLES:
        words.pop(0)
    while len(words) > 1 and _bare(words[-1]) in _SUFFIXES:
        words.pop()
    if not words:
        return None, None
    return words[-1].strip(","), " ".join(words[:-1]) or None


def minutes_between(start: Any, end: Any) -> int | None:
    try:
        delta = dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)
    except (TypeError, ValueError):
        return None
    return int(delta.total_seconds() // 60)


def require_id(ctx: MapContext) -> str:
    """The resource's source id: its id, else the id in its fullUrl, else (noted in the tally) its
    business identifier (``bundle.business_id``: the MRN of a patient, the NPI of a practitioner), the
    value other payloads name it by. A Coverage is not keyed by its identifier: that is usually the
    member id, which the coverages of one member (and often of a family) share."""
    sid = ctx.source_id
    if sid:
        return sid
    sid = business_id(ctx.item.resource) if ctx.item.type not in NOT_KEYED_BY_IDENTIFIER else None
    if not sid:
        also = "" if ctx.item.type in NOT_KEYED_BY_IDENTIFIER else ", nor an identifier,"
        raise ValidationError(f"{ctx.item.type} has neither an id nor a fullUrl{also} to take its source id from",
                              location=f"{ctx.item.path}.id")
    ctx.source_id = sid
    ctx.tally.notes.append(f"{ctx.item.path}: sent without id or fullUrl, source id taken from its identifier")
    return sid


# ---------------------------------------------------------------- resources
def patient(res: dict[str, Any], ctx: MapContext) -> Iterator[Record]:
    family, given = human_name(res)
    identifiers = []
    for ident in res.get("identifier") or ():
        if isinstance(ident, dict) and ident.get("value"):
            identifiers.append({"system": ident.get("system"), "value": str(ident["value"]),
                                "type": code(ident.get("type"))})
    addresses = [a for a in res.get("address") or () if isinstance(a, dict)]
    home = _preferred(addresses)
    address = home if home is not None else first(addresses) or {}
    telecom = [t for t in res.get("telecom") or () if isinstance(t, dict)]
    phone = next((t.get("value") for t in telecom if t.get("system") == "phone"), None)
    email = _preferred([t for t in telecom if t.get("system") == "email" and _text(t.get("value"))])
    own_id = require_id(ctx)
    yield {"kind": "patient", "source_id": own_id, "identifiers": identifiers or None,
           "family_name": family, "given_name": given, "birth_date": date(res.get("birthDate")),
           "sex": res.get("gender"), "postal_code": address.get("postalCode"),
           "address_line": _text(first(home.get("line"))) if home is not None else None,
           "phone": phone, "email": _text(email.get("value")) if email is not None else None}
    yield from patient_merges(res, ctx, own_id)


def _text(value: Any) -> str | None:
    """A string element's text, stripped; None when it is no text or blank."""
    return value.strip() or None if isinstance(value, str) else None


def _preferred(elements: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The element (Address, ContactPoint) of use ``home``, else the first not of use ``old``."""
    return next((e for e in elements if e.get("use") == "home"), None) or \
        next((e for e in elements if e.get("use") != "old"), None)


MERGE_LINKS = ("replaced-by", "replaces")  # Patient.link types that are a merge (seealso, refer are not)


def patient_merges(res: dict[str, Any], ctx: MapContext, own_id: str) -> Iterator[Record]:
    """``Patient.link`` of type ``replaced-by`` (this record was merged into ``other``) or ``replaces``
    (``other`` was merged into this one) → a ``patient_merge``, as an HL7 v2 A40 gives: prior > surviving.
    ``merged_at`` is the Patient's event time (set with it by the connector)."""
    for link in res.get("link") or ():
        if not isinstance(link, dict) or link.get("type") not in MERGE_LINKS:
            continue
        other = ctx.ref_id(link.get("other"), "Patient")
        if not other or other == own_id:
            continue
        prior, surviving = (own_id, other) if link["type"] == "replaced-by" else (other, own_id)
        yield {"kind": "patient_merge", "source_id": f"{prior}>{surviving}", "prior_source_id": prior,
               "surviving_source_id": surviving}


def practitioner(res: dict[str, Any], ctx: MapContext) -> Iterator[Record]:
    family, given = human_name(res)
    yield {"kind": "provider", "source_id": require_id(ctx), "npi": npi_of(res), "family_name": family,
           "given_name": given}


def practitioner_role(res: dict[str, Any], ctx: MapContext) -> Iterator[Record]:
    ref = res.get("practitioner")
    source_id, npi = ctx.provider(ref)
    if source_id is None:  # a role without a practitioner still stands for a provider
        source_id, npi = require_id(ctx), npi_of(res)
    record = {"kind": "provider", "source_id": source_id, "npi": npi or npi_of(res),
              "specialty": code(first(res.get("specialty")))}
    target = ctx.resolve(ref)
    display = ref.get("display") if isinstance(ref, dict) else None
    if target is not None and target.resource is None and isinstance(display, str) and display.strip():
        # the practitioner is not in the payload (named by NPI, a batch entry of its own): the name the
        # reference shows keeps the provider from being a nameless one
        record["family_name"], record["given_name"] = split_name_text(display)
    yield record


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
    if start is None and res.get("start") is None and res.get("status") in UNSCHEDULED:
        ctx.tally.skip("Appointment (no start)")  # FHIR allows it (app-3): nothing to count yet
        return
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
           "booked_at": ctx.datetime(res.get("created")), "referral_source_id": referral,
           "cancelled_at": cancellation_date(res, ctx)}


def cancellation_date(res: dict[str, Any], ctx: MapContext) -> str | None:
    """When a cancelled appointment was cancelled: R5 ``Appointment.cancellationDate``, sent in R4 as its
    cross-version extension."""
    if res.get("status") != "cancelled":
        return None
    for ext in res.get("extension") or ():
        if isinstance(ext, dict) and ext.get("url") == CANCELLATION_DATE:
            return ctx.datetime(ext.get("valueDateTime"))
    return None


def encounter_provider(res: dict[str, Any], ctx: MapContext) -> str | None:
    """The first participant of an Encounter that is a practitioner (or a role)."""
    for part in res.get("participant") or ():
        if isinstance(part, dict):
            provider_id, _ = ctx.provider(part.get("individual"))
            if provider_id:
                return provider_id
    return None


def encounter(res: dict[str, Any], ctx: MapContext) -> Iterator[Record]:
    provider_id = encounter_provider(res, ctx)
    period = _dict(res.get("period"))
    place = first(res.get("location"))
    status: Any = res.get("status")
    klass = res.get("class")
    yield {"kind": "encounter", "source_id": require_id(ctx),
           "patient_source_id": ctx.ref_id(res.get("subject"), "Patient"), "provider_source_id": provider_id,
           "appointment_source_id": ctx.ref_id(first(res.get("appointment")), "Appointment"),
           "location_source_id": ctx.ref_id(place.get("location") if isinstance(place, dict) else None,
                                            "Location"),
           "start": ctx.datetime(period.get("start")), "end": ctx.datetime(period.get("end")),
           "status": ENCOUNTER_STATUS.get(status, status), "encounter_class": encounter_class(klass),
           "visit_type": code(first(res.get("type"))) or (klass.get("code") if isinstance(klass, dict) else None)}


def encounter_class(klass: Any) -> str | None:
    """``Encounter.class`` (a Coding of HL7 v3 ActEncounterCode) → its code, when it is one."""
    value = klass.get("code") if isinstance(klass, dict) else None
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value.upper() if value.upper() in ENCOUNTER_CLASSES else ENCOUNTER_CLASS_NAMES.get(value.lower())


def service_request(res: dict[str, Any], ctx: MapContext) -> Iterator[Record]:
    if not is_referral(res, ctx):
        # an order (a lab test, an imaging study, a procedure done in house), not a referral: nothing in
        # the common model
        ctx.tally.skip("ServiceRequest (an order, not a referral)")
        return
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


def is_referral(res: dict[str, Any], ctx: MapContext) -> bool:
    """A ServiceRequest is a referral when its category or code says so, or when it sends the patient to
    another clinician: a ``performer`` that is a practitioner (by reference) other than the requester, for
    a service that is neither a lab test nor imaging (a LOINC code, a laboratory or imaging category)."""
    concepts = [c for c in (*(res.get("category") or ()), res.get("code")) if isinstance(c, dict)]
    if any(map(_says_referral, concepts)):
        return True
    if any(codes(c) & ORDER_CATEGORY_CODES or any(isinstance(x, dict) and x.get("system") == LOINC
                                                   for x in c.get("coding") or ()) for c in concepts):
        return False
    requester = ctx.resolve(res.get("requester"))
    for performer in res.get("performer") or ():
        target = ctx.resolve(performer)
        if target is not None and target.type in ("Practitioner", "PractitionerRole") and (
                requester is None or (requester.type, requester.source_id) != (target.type, target.source_id)):
            return True
        if target is None and _names_a_clinician(performer) and _display(performer) != _display(res.get("requester")):
            return True  # "Paul Therapist, PT": a clinician named only by display, not the requester
    return False


def _display(ref: Any) -> str | None:
    display = ref.get("display") if isinstance(ref, dict) else None
    return " ".join(display.lower().split()) if isinstance(display, str) and display.strip() else None


def _names_a_clinician(ref: Any) -> bool:
    """A reference without a target (only a ``display``) that names a clinician: its declared type is
    Practitioner or PractitionerRole, or the name carries a clinician's title or credential (Dr., MD,
    PT, RNP, ...); a department, a lab or an organization named so is not one."""
    if not isinstance(ref, dict):
        return False
    if ref.get("type") in ("Practitioner", "PractitionerRole"):
        return True
    name = _display(ref) or ""
    head, comma, tail = name.rpartition(",")
    words = name.split()
    if not words or _bare(words[0]) == "dr":
        return bool(words)
    credentials = tail.split() if comma else words[-1:]  # "Paul Therapist, PT", "Jane Roe MD"
    before = head.strip() if comma else " ".join(words[:-1])
    return bool(before) and bool(credentials) and all(_bare(w) in _CREDENTIALS for w in credentials)


def _says_referral(concept: dict[str, Any]) -> bool:
    """A category or code that names a referral: a referral concept's code, or "referral" in its words."""
    if codes(concept) & REFERRAL_CATEGORY_CODES:
        return True
    words = [concept.get("text"), *(c.get("display") for c in concept.get("coding") or () if isinstance(c, dict))]
    return any(isinstance(w, str) and "referral" in w.lower() for w in words)


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
    use = res.get("use")
    if use in NOT_BILLED:
        ctx.tally.skip(f"Claim ({use})")  # asks the payer ahead of care: nothing was charged
        return
    claim_id = require_id(ctx)
    # the claim's number as the practice and its payers know it (what a remittance may name it by)
    claim_no = claim_number(res) or claim_id
    diagnoses = {d.get("sequence"): code(d.get("diagnosisCodeableConcept"))
                 for d in res.get("diagnosis") or () if isinstance(d, dict)}
    care_team = {c.get("sequence"): c.get("provider") for c in res.get("careTeam") or () if isinstance(c, dict)}
    default_provider, _ = ctx.provider(res.get("provider"))
    billable = _dict(res.get("billablePeriod"))
    payer = ctx.payer_name(res.get("insurer")) or insured_payer(res, ctx)
    for n, item in enumerate(res.get("item") or ()):
        if not isinstance(item, dict):
            continue
        provider_id = default_provider
        for seq in item.get("careTeamSequence") or ():
            provider_id = ctx.provider(care_team.get(seq))[0] or provider_id
            break
        visit = ctx.resolve(first(item.get("encounter")))
        if provider_id is None and visit is not None and visit.resource is not None and visit.type == "Encounter":
            # billed by an organization (Synthea): the clinician is the one of the encounter the line is for
            provider_id = encounter_provider(visit.resource, MapContext(
                ctx.refs, Item(visit.resource, ctx.item.path, visit.full_url), ctx.timezone, ctx.tally))
        amount = line_amount(item)
        served = _dict(item.get("servicedPeriod"))
        product = item.get("productOrService")
        links = [d for s in item.get("diagnosisSequence") or () if (d := diagnoses.get(s))]
        sequence = item.get("sequence", n + 1)
        yield {"kind": "charge", "source_id": f"{claim_id}-{sequence}", "claim_id": claim_no,
               "claim_line": sequence if isinstance(sequence, int) else None,
               "encounter_source_id": ctx.ref_id(first(item.get("encounter")), "Encounter"),
               "patient_source_id": ctx.ref_id(res.get("patient"), "Patient"), "provider_source_id": provider_id,
               "location_source_id": ctx.ref_id(item.get("locationReference"), "Location"),
               "service_date": date(item.get("servicedDate")) or date(served.get("start"))
               or date(billable.get("start")) or date(res.get("created")),
               "posted_on": date(res.get("created")), "procedure_code": code(product),
               "modifiers": [m for m in map(code, item.get("modifier") or ()) if m] or None,
               "units": number(item.get("quantity")), "amount": money_text(amount),
               "unpriced": True if amount is None else None,
               "diagnosis_codes": links or [d for d in diagnoses.values() if d] or None, "payer_name": payer}


def claim_number(res: dict[str, Any]) -> str | None:
    """A Claim's business identifier (the practice's claim number), the first one with a value."""
    for ident in res.get("identifier") or ():
        if isinstance(ident, dict) and isinstance(ident.get("value"), str) and ident["value"]:
            return str(ident["value"])
    return None


def line_amount(item: dict[str, Any]) -> Decimal | None:
    """A claim line's charge: its ``net``, else ``unitPrice`` × ``quantity`` (1 when not sent), else none."""
    net = money(item.get("net"))
    if net is not None:
        return net
    price = money(item.get("unitPrice"))
    if price is None:
        return None
    quantity = item.get("quantity")
    units = money(quantity) if isinstance(quantity, dict) else None
    return price * (units if units is not None else Decimal(1))


def insured_payer(res: dict[str, Any], ctx: MapContext) -> str | None:
    """The payer of the claim's focal coverage (``insurance[].coverage``), when the claim names no insurer."""
    insurance = [i for i in res.get("insurance") or () if isinstance(i, dict)]
    focal = next((i for i in insurance if i.get("focal") is True), first(insurance))
    ref = focal.get("coverage") if isinstance(focal, dict) else None
    target = ctx.resolve(ref)
    if target is not None and target.resource is not None and target.type == "Coverage":
        return ctx.payer_name(first(target.resource.get("payor")))
    display = ref.get("display") if isinstance(ref, dict) else None
    return display if isinstance(display, str) and display else None


def charge_item(res: dict[str, Any], ctx: MapContext) -> Iterator[Record]:
    period = _dict(res.get("occurrencePeriod"))
    performer = first(res.get("performer"))
    amount = money(res.get("priceOverride"))
    yield {"kind": "charge", "source_id": require_id(ctx),
           "encounter_source_id": ctx.ref_id(res.get("context"), "Encounter"),
           "patient_source_id": ctx.ref_id(res.get("subject"), "Patient"),
           "provider_source_id": ctx.provider(performer.get("actor") if isinstance(performer, dict) else None)[0],
           "service_date": date(res.get("occurrenceDateTime")) or date(period.get("start")),
           "posted_on": date(res.get("enteredDate")), "procedure_code": code(res.get("code")),
           "units": number(res.get("quantity")), "amount": money_text(amount),
           "unpriced": True if amount is None else None,
           "diagnosis_codes": [c for c in map(code, res.get("reason") or ()) if c] or None}


def categories(concept: Any) -> set[str]:
    """An adjudication category's codes, the CMS Blue Button ones (whose code is the variable's URL)
    named by the category of the base or CARIN BB code system they stand for."""
    out: set[str] = set()
    if not isinstance(concept, dict):
        return out
    for coding in concept.get("coding") or ():
        value = coding.get("code") if isinstance(coding, dict) else None
        if not isinstance(value, str) or not value:
            continue
        if coding.get("system") == BLUE_BUTTON_ADJUDICATION or value.startswith(BLUE_BUTTON_VARIABLES):
            value = value.rstrip("/").rsplit("/", 1)[-1]
            out.add(BLUE_BUTTON.get(value, value))
        else:
            out.add(value)
    return out


def _adjudicate(adjudications: Any) -> dict[str, Any]:
    """Adjudication lines → submitted, eligible, paid and the adjustments [{group, reason, amount}].

    Paid is what went to the provider: ``paidtoprovider`` (CARIN BB; the Blue Button line provider
    payment amount) added up when sent, else ``benefit`` (what the coverage pays). Deductible, copay and
    coinsurance are the patient's share (CARC group PR 1, 3, 2); ``memberliability`` is PR as well, the
    write-offs (``denied``, ``noncovered``, ``discount``) CO. What the patient paid (``paidbypatient``),
    what was paid to the patient or by a prior payer are not the provider's payment and are left aside;
    so are amounts of zero, which adjust nothing."""
    out: dict[str, Any] = {"submitted": None, "eligible": None, "paid": None, "adjustments": [], "reasons": []}
    to_provider: Decimal | None = None
    benefit: Decimal | None = None
    for adj in adjudications or ():
        if not isinstance(adj, dict):
            continue
        category = categories(adj.get("category"))
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
        elif "paidtoprovider" in category:
            to_provider = (to_provider or Decimal(0)) + amount
        elif "benefit" in category:
            benefit = amount
        elif not _NOT_THE_PROVIDERS.isdisjoint(category) or amount == 0:
            continue
        elif not _PATIENT_SHARE.isdisjoint(category):
            default = PATIENT_RESPONSIBILITY[next(iter(sorted(category & _PATIENT_SHARE)))]
            out["adjustments"].append({"group": "PR", "reason": reason or default, "amount": money_text(amount)})
        elif reason or not _WRITTEN_OFF.isdisjoint(category):
            group = "PR" if "memberliability" in category else "CO"
            out["adjustments"].append({"group": group, "reason": reason or next(iter(sorted(category)), None),
                                       "amount": money_text(amount)})
    out["paid"] = to_provider if to_provider is not None else benefit
    if out["submitted"] is not None and out["eligible"] is not None and out["submitted"] > out["eligible"] \
            and not any(a["group"] == "CO" for a in out["adjustments"]):
        # what the payer does not allow is the contractual write-off (CARC 45)
        out["adjustments"].append({"group": "CO", "reason": "45",
                                   "amount": money_text(out["submitted"] - out["eligible"])})
    return out


def _amounts(adjudications: Any) -> bool:
    """Whether adjudication lines carry any amount (a line a payer adjudicated, not just described)."""
    return any(isinstance(a, dict) and money(a.get("amount")) is not None for a in adjudications or ())


def remittance(res: dict[str, Any], ctx: MapContext) -> Iterator[Record]:
    """One remittance per adjudicated item and per ``addItem`` line (a service the payer added or paid
    in place of those billed); when no line carries an amount, one for the whole claim from the header
    ``total`` and ``payment`` (also when the lines carry amounts but no payment and the header has one).
    The claim is found by reference or by its business identifier."""
    own_id = require_id(ctx)
    claim_ref = res.get("claim") if res["resourceType"] == "ExplanationOfBenefit" else res.get("request")
    claim_id = ctx.ref_id(claim_ref, "Claim")
    target = ctx.resolve(claim_ref)
    # a claim named by its business identifier and not in this payload: its charges' source ids are
    # unknown here, so each line names the claim number and its line, and the store links them
    # (hub.reports.remit_link) to the charges of that claim_id and claim_line
    by_number = (target is not None and target.resource is None and isinstance(claim_ref, dict)
                 and not claim_ref.get("reference") and isinstance(claim_ref.get("identifier"), dict))
    if target is not None and target.resource is not None and target.type == "Claim":
        claim_id = claim_number(target.resource) or claim_id
    payment = _dict(res.get("payment"))
    paid_on = date(payment.get("date")) or date(res.get("created"))
    payer = ctx.payer_name(res.get("insurer"))
    claim_denied = res.get("outcome") == "error"
    items = [i for i in res.get("item") or () if isinstance(i, dict)]
    added = [i for i in res.get("addItem") or () if isinstance(i, dict)]
    base = {"kind": "remittance", "claim_id": claim_id or own_id, "payer_name": payer, "paid_on": paid_on}
    lines: list[tuple[str, Any, dict[str, Any]]] = []
    for n, item in enumerate(items):
        if item.get("adjudication"):
            seq = item.get("itemSequence", item.get("sequence", n + 1))
            lines.append((f"{own_id}-{seq}", seq, item))
    for n, item in enumerate(added):
        if item.get("adjudication"):
            seq = first(item.get("itemSequence"))
            lines.append((f"{own_id}-add{n + 1}", seq, item))
    results = [_adjudicate(item.get("adjudication")) for _, _, item in lines]
    totals = _adjudicate(res.get("total"))
    header_paid = totals["paid"] if totals["paid"] is not None else money(payment.get("amount"))
    line_paid = any(result["paid"] is not None for result in results)
    if not any(_amounts(item.get("adjudication")) for _, _, item in lines) or (
            not line_paid and header_paid is not None):
        # no line carries an amount, or none says what was paid and the header does: one for the claim
        yield {**base, "source_id": own_id, "paid_amount": money_text(header_paid),
               "adjustments": totals["adjustments"] or None,
               "adjustment_amount": _sum(totals["adjustments"]), "denied": claim_denied}
        return
    for (source_id, seq, _), result in zip(lines, results, strict=True):
        paid = result["paid"]
        denied = claim_denied or (paid is not None and paid == 0 and bool(result["reasons"] or result["adjustments"]))
        literal = ctx.ref_id(claim_ref, "Claim") if not by_number else None
        yield {**base, "source_id": source_id,
               "charge_source_id": f"{literal}-{seq}" if literal and seq is not None else None,
               "claim_line": seq if by_number and isinstance(seq, int) else None,
               "paid_amount": money_text(paid), "adjustments": result["adjustments"] or None,
               "adjustment_amount": _sum(result["adjustments"]), "denied": denied}


def payment_reconciliation(res: dict[str, Any], ctx: MapContext) -> Iterator[Record]:
    """One remittance per ``detail`` of type ``payment``: a payer's payment of one claim. Other details
    (an ``advance``, an ``adjustment`` of the payee's account) pay no claim: counted by type.
    The claim is the detail's ``request`` (by reference or business identifier, as for ClaimResponse;
    a ChargeItem names the charge itself); the source id is the detail's identifier, else
    ``<id>-<n>`` (its position, from 1)."""
    payer = ctx.payer_name(res.get("paymentIssuer"))
    paid_on = date(res.get("paymentDate"))
    trace = _dict(res.get("paymentIdentifier")).get("value")
    for n, detail in enumerate(res.get("detail") or ()):
        if not isinstance(detail, dict):
            continue
        if "payment" not in codes(detail.get("type")):
            ctx.tally.skip(f"PaymentReconciliation.detail ({code(detail.get('type')) or 'no type'})")
            continue
        request = ctx.resolve(detail.get("request"))
        charge_id = request.source_id if request is not None and request.type == "ChargeItem" else None
        claim_id = None if charge_id else ctx.ref_id(detail.get("request"), "Claim")
        own = _dict(detail.get("identifier")).get("value")
        source_id = own if isinstance(own, str) and own else f"{require_id(ctx)}-{n + 1}"
        yield {"kind": "remittance", "source_id": source_id,
               "claim_id": claim_id, "charge_source_id": charge_id, "payer_name": payer,
               "paid_amount": money_text(money(detail.get("amount"))),
               "paid_on": date(detail.get("date")) or paid_on,
               "trace_number": trace if isinstance(trace, str) and trace else None}


def _sum(adjustments: list[dict[str, Any]]) -> str | None:
    if not adjustments:
        return None
    return money_text(sum((Decimal(a["amount"]) for a in adjustments), Decimal(0)))


def slot(res: dict[str, Any], ctx: MapContext) -> Iterator[Record]:
    provider_id = location_id = None
    schedule = ctx.resolve(res.get("schedule"))
    if schedule is not None and schedule.resource is not None:
        # the schedule's actors are resolved as references made by the schedule
        in_schedule = MapContext(ctx.refs, Item(schedule.resource, ctx.item.path, schedule.full_url), ctx.timezone,
                                 ctx.tally)
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


def reference_only(res: dict[str, Any], ctx: MapContext) -> Iterator[Record]:
    """Organization and Schedule give no record of their own: they name payers and give slots their
    provider and location. The message's notes say what the ones it holds were used for (once per type)."""
    note = ctx.refs.uses_note(ctx.item.type)
    if note:
        ctx.tally.notes.append(note)
    return iter(())


MAPPERS: dict[str, Callable[[dict[str, Any], MapContext], Iterator[Record]]] = {
    "Patient": patient,
    "Practitioner": practitioner,
    "PractitionerRole": practitioner_role,
    "Organization": reference_only,
    "Location": location,
    "Appointment": appointment,
    "Encounter": encounter,
    "ServiceRequest": service_request,
    "Coverage": coverage,
    "Claim": claim,
    "ChargeItem": charge_item,
    "ClaimResponse": remittance,
    "ExplanationOfBenefit": remittance,
    "PaymentReconciliation": payment_reconciliation,
    "Schedule": reference_only,
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
