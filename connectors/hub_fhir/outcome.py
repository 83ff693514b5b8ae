"""The FHIR answers: an OperationOutcome per message, a batch- or transaction-response Bundle.

HTTP status words in ``entry.response.status``: ``201 Created`` (stored and processed or
queued), ``200 OK`` (the same content was already received), ``400 Bad Request``
(unreadable: refused), ``422 Unprocessable Entity`` (read but not valid or not mappable;
kept in the message store with the reason, and reprocessable).

The HTTP status of the whole answer (``http_status``) follows FHIR's REST rules: a batch is
answered 200 with each entry's status in its batch-response; a single resource or a transaction
that is refused is answered 400 (unreadable JSON or Bundle) or 422 (read, but not valid or not
mappable by the hub's rules), never 200, with the OperationOutcome.

An error issue's ``expression`` is the FHIR element path (``Bundle.entry[2].resource.start``), not
the hub's model field: a reason that names an element path gives it; a refusal by the common
model after mapping (``appointment.start: Missing data...``) is traced back to the element that
fed the field (``MODEL_ELEMENTS``) in each resource of the payload that gives that kind of record
(the ones without the element, when the field is missing), else to those resources themselves.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import orjson

from hub.connector import Envelope, Outcome
from hub.errors import HubError

from . import bundle

MEDIA_TYPE = "application/fhir+json"
# the element path in a stored reason "<file>, <path>: <message>" (a file name is followed by ", ")
_PATH = re.compile(r"((?:Bundle\.entry\[\d+\](?:\.resource)?|[A-Z][A-Za-z]+)(?:\.[A-Za-z]+(?:\[\d+\])?)+)(?=: )")
# the model fields a common-model refusal names: "record does not fit the common model: kind.field, ...: "
_MODEL = re.compile(r"does not fit the common model: ([a-z_]+\.[a-z_]+(?:, [a-z_]+\.[a-z_]+)*): ")
_MISSING = "Missing data for required field"  # the model's word for a required field left empty

# The resource types whose mapper gives each kind of record (hub_fhir.mapping), and per model field
# the element of each that feeds it: a common-model refusal is answered with the FHIR element, which
# the sender knows, not the hub's field. A field not listed is answered with the resource's path.
KIND_TYPES = {
    "patient": ("Patient",), "provider": ("Practitioner", "PractitionerRole"), "location": ("Location",),
    "appointment": ("Appointment",), "encounter": ("Encounter",), "referral": ("ServiceRequest",),
    "coverage": ("Coverage",), "charge": ("Claim", "ChargeItem"), "slot": ("Slot",),
    "remittance": ("ExplanationOfBenefit", "ClaimResponse", "PaymentReconciliation"),
    "patient_merge": ("Patient",),
}
MODEL_ELEMENTS: dict[str, dict[str, str]] = {
    "patient.family_name": {"Patient": "name"}, "patient.given_name": {"Patient": "name"},
    "patient.birth_date": {"Patient": "birthDate"}, "patient.sex": {"Patient": "gender"},
    "patient.postal_code": {"Patient": "address"}, "patient.phone": {"Patient": "telecom"},
    "patient.address_line": {"Patient": "address"}, "patient.email": {"Patient": "telecom"},
    "patient.identifiers": {"Patient": "identifier"},
    "patient_merge.prior_source_id": {"Patient": "link"}, "patient_merge.surviving_source_id": {"Patient": "link"},
    "provider.npi": {"Practitioner": "identifier", "PractitionerRole": "identifier"},
    "provider.family_name": {"Practitioner": "name"}, "provider.given_name": {"Practitioner": "name"},
    "provider.specialty": {"PractitionerRole": "specialty"},
    "location.name": {"Location": "name"},
    "appointment.start": {"Appointment": "start"}, "appointment.status": {"Appointment": "status"},
    "appointment.duration_min": {"Appointment": "minutesDuration"},
    "appointment.booked_at": {"Appointment": "created"},
    "appointment.cancel_reason": {"Appointment": "cancelationReason"},
    "appointment.visit_type": {"Appointment": "serviceType"},
    "appointment.patient_source_id": {"Appointment": "participant"},
    "appointment.provider_source_id": {"Appointment": "participant"},
    "appointment.provider_npi": {"Appointment": "participant"},
    "appointment.location_source_id": {"Appointment": "participant"},
    "appointment.referral_source_id": {"Appointment": "basedOn"},
    "encounter.start": {"Encounter": "period.start"}, "encounter.end": {"Encounter": "period.end"},
    "encounter.status": {"Encounter": "status"}, "encounter.encounter_class": {"Encounter": "class"},
    "encounter.visit_type": {"Encounter": "type"}, "encounter.patient_source_id": {"Encounter": "subject"},
    "encounter.provider_source_id": {"Encounter": "participant"},
    "encounter.appointment_source_id": {"Encounter": "appointment"},
    "encounter.location_source_id": {"Encounter": "location"},
    "referral.received_on": {"ServiceRequest": "authoredOn"}, "referral.status": {"ServiceRequest": "status"},
    "referral.patient_source_id": {"ServiceRequest": "subject"},
    "referral.referring_provider": {"ServiceRequest": "requester"},
    "referral.specialty": {"ServiceRequest": "performerType"},
    "coverage.patient_source_id": {"Coverage": "beneficiary"}, "coverage.payer_name": {"Coverage": "payor"},
    "coverage.member_id": {"Coverage": "subscriberId"}, "coverage.rank": {"Coverage": "order"},
    "coverage.financial_class": {"Coverage": "type"},
    "charge.service_date": {"Claim": "item.servicedDate", "ChargeItem": "occurrenceDateTime"},
    "charge.posted_on": {"Claim": "created", "ChargeItem": "enteredDate"},
    "charge.procedure_code": {"Claim": "item.productOrService", "ChargeItem": "code"},
    "charge.modifiers": {"Claim": "item.modifier"},
    "charge.units": {"Claim": "item.quantity", "ChargeItem": "quantity"},
    "charge.amount": {"Claim": "item.net", "ChargeItem": "priceOverride"},
    "charge.diagnosis_codes": {"Claim": "diagnosis", "ChargeItem": "reason"},
    "charge.payer_name": {"Claim": "insurer"},
    "charge.patient_source_id": {"Claim": "patient", "ChargeItem": "subject"},
    "charge.encounter_source_id": {"Claim": "item.encounter", "ChargeItem": "context"},
    "charge.provider_source_id": {"Claim": "provider", "ChargeItem": "performer"},
    "remittance.payer_name": {"ExplanationOfBenefit": "insurer", "ClaimResponse": "insurer",
                              "PaymentReconciliation": "paymentIssuer"},
    "remittance.paid_on": {"ExplanationOfBenefit": "payment.date", "ClaimResponse": "payment.date",
                           "PaymentReconciliation": "detail.date"},
    "remittance.paid_amount": {"ExplanationOfBenefit": "item.adjudication", "ClaimResponse": "item.adjudication",
                               "PaymentReconciliation": "detail.amount"},
    "remittance.adjustment_amount": {"ExplanationOfBenefit": "item.adjudication",
                                     "ClaimResponse": "item.adjudication"},
    "remittance.adjustments": {"ExplanationOfBenefit": "item.adjudication", "ClaimResponse": "item.adjudication"},
    "remittance.claim_id": {"ExplanationOfBenefit": "claim", "ClaimResponse": "request",
                            "PaymentReconciliation": "detail.request"},
    "remittance.charge_source_id": {"ExplanationOfBenefit": "claim", "ClaimResponse": "request",
                                    "PaymentReconciliation": "detail.request"},
    "slot.start": {"Slot": "start"}, "slot.duration_min": {"Slot": "end"}, "slot.status": {"Slot": "status"},
    "slot.provider_source_id": {"Slot": "schedule"}, "slot.location_source_id": {"Slot": "schedule"},
}


def http_status(results: Sequence[tuple[Envelope, Outcome]]) -> int:
    """The HTTP status of the answer to a payload (see the module's docstring): 200 for a batch (each
    entry's status is in the batch-response) or a payload that was taken in; else 400 when it could
    not be read at all, 422 when it was read but refused."""
    if not results:
        return 200
    if len(results) > 1 or results[0][0].meta.get("bundle_type") == "batch":
        return 200
    outcome = results[0][1]
    if outcome.accepted:
        return 200
    return 400 if outcome.rejected else 422


def status_of(outcome: Outcome) -> str:
    if outcome.duplicate and outcome.accepted:
        return "200 OK"
    if outcome.accepted:
        return "201 Created"
    return "400 Bad Request" if outcome.rejected else "422 Unprocessable Entity"


def operation_outcome(outcome: Outcome, notes: Sequence[str] = (), envelope: Envelope | None = None) -> dict[str, Any]:
    if outcome.accepted:
        text = (f"already received as message {outcome.message_id}" if outcome.duplicate
                else f"stored as message {outcome.message_id}")
        issues = [{"severity": "information", "code": "informational", "diagnostics": text}]
        issues += [{"severity": "information", "code": "not-supported", "diagnostics": n} for n in notes]
        return {"resourceType": "OperationOutcome", "issue": issues}
    reason = outcome.error or "the message could not be processed"
    issue: dict[str, Any] = {"severity": "error", "code": _issue_code(outcome, reason), "diagnostics": reason}
    expressions = [outcome.error_location] if outcome.error_location else []
    if not expressions:
        found = _PATH.search(reason)
        expressions = [found.group(1)] if found else []
    if not expressions and envelope is not None:
        expressions = model_elements(reason, envelope)
    if expressions:
        issue["expression"] = expressions
    if outcome.message_id is not None:
        issue["diagnostics"] = f"{reason} (kept as message {outcome.message_id})"
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def model_elements(reason: str, envelope: Envelope) -> list[str]:
    """The FHIR elements behind a common-model refusal (``reason``) of the message ``envelope``: for
    each model field it names, the element that feeds it (``MODEL_ELEMENTS``) in each resource of
    the message giving that kind of record (only those without the element when the model says it
    is missing), else those resources' paths; [] for any other reason. Read on the error path only."""
    found = _MODEL.search(reason)
    if found is None:
        return []
    try:
        items = bundle.items_of(bundle.load(envelope.raw)).items
    except HubError:
        return []
    said = reason[found.end():]  # "start: Missing data for required field.; status: ..."
    out: list[str] = []
    for named in found.group(1).split(", "):
        kind, _, field = named.partition(".")
        missing = re.search(rf"(?:^|; ){field}: [^;]*{_MISSING}", said) is not None
        elements = MODEL_ELEMENTS.get(named, {})
        givers = [item for item in items if item.type in KIND_TYPES.get(kind, ())]
        if missing:  # the resources that lack the element, when the model says it is missing
            givers = [i for i in givers if i.type not in elements or not _has(i.resource, elements[i.type])] or givers
        for item in givers:
            element = elements.get(item.type)
            path = f"{item.path}.{element}" if element else item.path
            if path not in out:
                out.append(path)
    return out


def _has(resource: dict[str, Any], element: str) -> bool:
    """True when ``element`` (dotted, through lists) holds a value somewhere in ``resource``."""
    values: list[Any] = [resource]
    for name in element.split("."):
        values = [v for value in values for v in _children(value, name)]
    return any(v not in (None, "", [], {}) for v in values)


def _children(value: Any, name: str) -> list[Any]:
    if isinstance(value, list):
        return [c for v in value for c in _children(v, name)]
    if isinstance(value, dict) and name in value:
        child = value[name]
        return child if isinstance(child, list) else [child]
    return []


def _issue_code(outcome: Outcome, reason: str) -> str:
    if "unsupported resource type" in reason:
        return "not-supported"
    if outcome.rejected:
        return "structure"
    return "invalid" if "not valid FHIR" in reason or "common model" in reason else "processing"


def unsupported_notes(envelope: Envelope, supported: frozenset[str]) -> list[str]:
    types = [t for t in envelope.meta.get("entries") or () if t and t not in supported]
    if not types or envelope.meta.get("bundle_type") is None:
        return []
    counts: dict[str, int] = {}
    for t in types:
        counts[t] = counts.get(t, 0) + 1
    listed = ", ".join(f"{t} x{n}" for t, n in sorted(counts.items()))
    return [f"kept in the message store but not mapped (unsupported resource type): {listed}"]


def answer(results: Sequence[tuple[Envelope, Outcome]], supported: frozenset[str]) -> tuple[bytes, str] | None:
    if not results:
        return None
    first_env, first_outcome = results[0]
    kind = first_env.meta.get("bundle_type")
    if kind == "batch":
        entries = [{"response": {"status": status_of(o), "outcome": operation_outcome(o, envelope=e)}}
                   for e, o in results]
        body: dict[str, Any] = {"resourceType": "Bundle", "type": "batch-response", "entry": entries}
    elif kind == "transaction" and first_outcome.accepted:
        entries = []
        for rtype in first_env.meta.get("entries") or ():
            response: dict[str, Any] = {"status": status_of(first_outcome)}
            if rtype not in supported:
                # an entry without a resource is a DELETE, GET, HEAD or PATCH: skipped (see docs/fhir.md)
                said = (f"{rtype} is kept in the message store but not mapped" if rtype
                        else "the entry carries no resource: not taken in (the hub takes resources and keeps "
                             "their history)")
                response["status"] = "200 OK"
                response["outcome"] = {"resourceType": "OperationOutcome", "issue": [{
                    "severity": "information", "code": "not-supported", "diagnostics": said}]}
            entries.append({"response": response})
        body = {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}
    else:
        body = operation_outcome(first_outcome, unsupported_notes(first_env, supported), first_env)
    return orjson.dumps(body), MEDIA_TYPE
