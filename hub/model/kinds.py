"""The common model, declared once.

Each kind is a list of fields; the marshmallow schemas (``schemas.py``) and the
database tables (``tables.py``) are both built from this declaration, so the two
can never disagree. ``(practice, kind, source_id)`` is every record's natural key.

Codes keep their source value; where the mapping gives an MSO value it sits in a
field of its own beside it (``visit_type`` → ``service_line``/``visit_category``,
``payer_name`` → ``payer``/``financial_class``, ``location_source_id`` →
``mso_location``, ``cancel_reason`` → ``cancel_category``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hub.errors import ValidationError

STR_MAX = 255  # characters of a "str" field (its column); a longer value refuses its message, alone
FieldType = Literal["str", "text", "date", "datetime", "int", "money", "bool", "list", "json", "enum"]

SEX = ("female", "male", "other", "unknown")
FINANCIAL_CLASS = ("commercial", "medicare", "medicaid", "self_pay", "other")
PRACTICE_STATUS = ("onboarding", "live", "offboarded")
# FHIR Appointment.status words; HL7 v2 triggers and filler codes are mapped onto them.
APPOINTMENT_STATUS = (
    "proposed",
    "pending",
    "booked",
    "arrived",
    "fulfilled",
    "cancelled",
    "noshow",
    "checked-in",
    "entered-in-error",
    "waitlist",
)
ENCOUNTER_STATUS = ("planned", "arrived", "in-progress", "finished", "cancelled", "entered-in-error", "unknown")
REFERRAL_STATUS = ("draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown")
SLOT_STATUS = ("free", "busy", "busy-unavailable", "busy-tentative", "entered-in-error")


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType = "str"
    required: bool = False
    choices: tuple[str, ...] = ()
    phi: bool = False  # patient data: redacted from logs and errors, never in reports
    indexed: bool = False
    doc: str = ""


def _f(name: str, type: FieldType = "str", **kw: object) -> Field:
    return Field(name, type, **kw)  # type: ignore[arg-type]


KINDS: dict[str, tuple[Field, ...]] = {
    "location": (
        _f("name"),
        _f("mso_location", doc="MSO location code from the practice mapping"),
    ),
    "provider": (
        _f("npi", indexed=True),
        _f("family_name"),
        _f("given_name"),
        _f("specialty"),
    ),
    "patient": (
        _f("identifiers", "json", phi=True, doc="[{system, value}] every identifier the source gives"),
        _f("family_name", phi=True),
        _f("given_name", phi=True),
        _f("birth_date", "date", phi=True),
        _f("sex", "enum", choices=SEX),
        _f("postal_code", phi=True),
        _f("phone", phi=True),
        _f("address_line", phi=True, doc="first street line of the home address"),
        _f("email", phi=True),
        _f("enterprise_id", indexed=True, doc="cross-site patient link, set by the master patient index "
                                              "(hub.identity); a plugin or feed may preset it"),
    ),
    "coverage": (
        _f("patient_source_id", phi=False, indexed=True),
        _f("payer_name"),
        _f("payer", doc="MSO payer"),
        _f("financial_class", "enum", choices=FINANCIAL_CLASS),
        _f("member_id", phi=True),
        _f("rank", "int"),
    ),
    "appointment": (
        _f("patient_source_id"),  # indexed with practice: hub.model.tables.PATIENT_VISIT_INDEXES
        _f("provider_source_id"),
        _f("provider_npi"),
        _f("location_source_id"),
        _f("mso_location"),
        _f("start", "datetime", required=True),
        _f("duration_min", "int"),
        _f("visit_type"),
        _f("visit_category"),
        _f("service_line"),
        _f("status", "enum", required=True, choices=APPOINTMENT_STATUS),
        _f("cancel_reason"),
        _f("cancel_category"),
        _f("cancelled_at", "datetime", doc="when the cancellation was recorded (late cancellation < 24 h)"),
        _f("booked_at", "datetime"),
        _f("referral_source_id"),
        _f("new_patient", "bool"),
    ),
    "encounter": (
        _f("patient_source_id"),  # indexed with practice: hub.model.tables.PATIENT_VISIT_INDEXES
        _f("provider_source_id"),
        _f("appointment_source_id"),
        _f("location_source_id"),
        _f("mso_location"),
        _f("start", "datetime"),
        _f("end", "datetime"),
        _f("status", "enum", choices=ENCOUNTER_STATUS),
        _f("encounter_class", doc="HL7 v3 ActEncounterCode (AMB, EMER, IMP, ...); HL7 v2 PV1-2 is mapped onto it"),
        _f("visit_type"),
        _f("visit_category"),
        _f("service_line"),
    ),
    "referral": (
        _f("patient_source_id", indexed=True),
        _f("referring_provider"),
        _f("specialty"),
        _f("service_line"),
        _f("received_on", "date"),
        _f("status", "enum", choices=REFERRAL_STATUS),
    ),
    "charge": (
        _f("encounter_source_id"),
        _f("patient_source_id", indexed=True),
        _f("provider_source_id"),
        _f("location_source_id"),
        _f("service_date", "date", required=True),
        _f("posted_on", "date"),
        _f("procedure_code"),
        _f("modifiers", "list"),
        _f("units", "int"),
        _f("claim_line", "int", doc="the line's number within its claim (FHIR Claim.item.sequence, 837 LX-01)"),
        _f("amount", "money", doc="none when the source sent no price (then ``unpriced``)"),
        _f("unpriced", "bool", doc="the source sent the line without an amount (a DFT without FT1-11/12)"),
        _f("diagnosis_codes", "list"),
        _f("payer_name"),
        _f("payer"),
        _f("financial_class", "enum", choices=FINANCIAL_CLASS),
        _f("visit_type"),
        _f("service_line"),
        _f("claim_id", doc="the claim the line was billed on (X12 837 CLM-01, the patient control number)"),
        _f("payer_id", doc="the payer's identifier as the claim names it (X12 837 NM1*PR NM1-09)"),
        _f("rendering_npi", doc="NPI of the provider who rendered the service (X12 837 NM1*82)"),
        _f("billing_npi", doc="NPI of the billing provider (X12 837 NM1*85)"),
    ),
    "remittance": (
        _f("charge_source_id", indexed=True),
        _f("claim_id"),
        _f("claim_line", "int", doc="the claim line it answers, when it names no charge (FHIR itemSequence)"),
        _f("payer_name"),
        _f("payer"),
        _f("paid_amount", "money"),
        _f("adjustment_amount", "money"),
        _f("adjustments", "json", doc="[{group, reason, amount}] CARC group and reason codes"),
        _f("denied", "bool"),
        _f("paid_on", "date"),
        # from X12 835 electronic remittance advice (hub_x12)
        _f("payer_claim_id", doc="the payer's claim control number (835 CLP-07)"),
        _f("claim_status", doc="the claim status code (835 CLP-02: 1 paid, 4 denied, 22 reversal, ...)"),
        _f("payer_id", doc="the payer's identifier (835 REF*2U, else N1*PR N1-04)"),
        _f("payee_npi", doc="NPI of the payee (835 N1*PE N1-04 with qualifier XX)"),
        _f("trace_number", doc="check or EFT trace number of the payment (835 TRN-02)"),
        _f("procedure_code", doc="the adjudicated procedure (835 SVC-01-2)"),
        _f("modifiers", "list", doc="procedure modifiers (835 SVC-01-3 to -6)"),
        _f("charged_amount", "money", doc="the line's (or claim's) charge as billed (835 SVC-02, CLP-03)"),
        _f("units", "int", doc="units paid (835 SVC-05; 1 when not sent)"),
        _f("service_date", "date", doc="835 DTM*472 (or DTM*150) of the line, else the claim's DTM*232"),
        _f("remark_codes", "list", doc="remittance advice remark codes (835 LQ*HE, MOA, MIA)"),
    ),
    "slot": (
        _f("provider_source_id"),
        _f("location_source_id"),
        _f("start", "datetime", required=True),
        _f("duration_min", "int", required=True),
        _f("status", "enum", choices=SLOT_STATUS),
        _f("service_line"),
    ),
    "patient_merge": (
        _f("prior_source_id", required=True, doc="the patient record that is merged away"),
        _f("surviving_source_id", required=True),
        _f("merged_at", "datetime"),
    ),
}

# Fields that hold another record's source_id, by kind: a patient merge re-points these.
PATIENT_REFERENCES = {kind: "patient_source_id" for kind, fields in KINDS.items()
                      if any(f.name == "patient_source_id" for f in fields)}

COMMON_FIELDS = (
    Field("kind", "str", required=True),
    Field("practice", "str", required=True),
    Field("source_id", "str", required=True),
    # when the event the record reports happened (HL7 EVN, FHIR meta.lastUpdated, a CSV column);
    # the store keeps, field by field, the value of the latest event, whatever the arrival order
    Field("event_time", "datetime", doc="time of the event the message reports; arrival when none is sent"),
)

PRACTICE_FIELDS = (
    Field("slug", required=True),
    Field("name", required=True),
    Field("acquired_on", "date"),
    Field("go_live_on", "date"),
    Field("status", "enum", choices=PRACTICE_STATUS),
    Field("timezone"),
)


def check_timezone(name: str | None) -> None:
    """Refuse a zone that is not an IANA name (``America/Chicago``); None is no zone."""
    if name is None:
        return
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder ("America")
        raise ValidationError(f"unknown time zone {name!r}: give an IANA name such as America/Chicago") from None


@cache
def datetime_fields(kind: str) -> tuple[str, ...]:
    """The date-time fields of a kind, ``event_time`` included: read and shown in the practice's zone."""
    return ("event_time", *(f.name for f in KINDS[kind] if f.type == "datetime"))


def fields_of(kind: str) -> tuple[Field, ...]:
    try:
        return KINDS[kind]
    except KeyError:
        raise ValidationError(f"unknown record kind {kind!r} (known: {', '.join(sorted(KINDS))})") from None


def phi_fields(kind: str) -> frozenset[str]:
    return frozenset(f.name for f in KINDS.get(kind, ()) if f.phi)
