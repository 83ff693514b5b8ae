"""The common model every connector maps into (see ``kinds.py`` for the fields).

The schemas (marshmallow) are imported when first used: the kinds are read by plugins that every
command loads, ``hub --help`` included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub import names_from
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

if TYPE_CHECKING:
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

__getattr__ = names_from("hub.model.schemas", ("schema_for", "to_json_ready", "validate_record"), globals())
