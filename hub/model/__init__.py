"""The common model every connector maps into (see ``kinds.py`` for the fields)."""

from hub.model.kinds import (
    APPOINTMENT_STATUS,
    FINANCIAL_CLASS,
    KINDS,
    PATIENT_REFERENCES,
    SEX,
    Field,
    fields_of,
    phi_fields,
)
from hub.model.schemas import schema_for, to_json_ready, validate_record

__all__ = [
    "APPOINTMENT_STATUS",
    "FINANCIAL_CLASS",
    "KINDS",
    "PATIENT_REFERENCES",
    "SEX",
    "Field",
    "fields_of",
    "phi_fields",
    "schema_for",
    "to_json_ready",
    "validate_record",
]
