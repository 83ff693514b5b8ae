"""Per-practice field overrides: "this practice sends the MRN in PID-2", "the type is in AIS-3".

The names and their default places are the mapping schema's (``hub mapping names``); a
practice's mapping sets them under ``connectors: {hl7v2: {overrides: ...}}``, each a path
or ``{from: PATH, transform: NAME | [NAMES]}``. The value read at the override's path, after
its named transforms, replaces what the standard mapping put in the record fields below.
An override whose path is empty in a message leaves that message's records as they were.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hub.mapping.schema import iter_overrides, parse_hl7_path
from hub.mapping.transforms import apply_transforms

from . import er7

Records = list[dict[str, Any]]


def _set(kinds: tuple[str, ...], field: str) -> Callable[[Records, str], None]:
    def apply(records: Records, value: str) -> None:
        for record in records:
            if record["kind"] in kinds:
                record[field] = value

    return apply


def _patient_id(records: Records, value: str) -> None:
    patients = [r for r in records if r["kind"] == "patient"]
    if len(patients) != 1:  # a merge names two patients: the standard identifiers stand
        return
    old = patients[0]["source_id"]
    for record in records:
        if record["kind"] == "patient" and record["source_id"] == old:
            record["source_id"] = value
        if record.get("patient_source_id") == old:
            record["patient_source_id"] = value


def _appointment_id(records: Records, value: str) -> None:
    appointments = [r for r in records if r["kind"] == "appointment"]
    if len(appointments) == 1:
        old = appointments[0]["source_id"]
        appointments[0]["source_id"] = value
        for record in records:
            if record.get("appointment_source_id") == old:
                record["appointment_source_id"] = value


APPLY: dict[str, Callable[[Records, str], None]] = {
    "patient_id": _patient_id,
    "appointment_id": _appointment_id,
    "visit_type": _set(("appointment", "encounter"), "visit_type"),
    "provider_id": _set(("appointment",), "provider_source_id"),
    "location_id": _set(("appointment",), "location_source_id"),
    "cancel_reason": _set(("appointment",), "cancel_reason"),
    "payer_name": _set(("coverage",), "payer_name"),
}


def apply_overrides(message: er7.Message, records: Records, config: dict[str, Any]) -> Records:
    if not config.get("overrides"):
        return records
    for name, path, transforms in iter_overrides(config):
        segment, field, component, sub = parse_hl7_path(path)
        value = apply_transforms(message.get(message.first(segment), field, component or 1, sub or 1), transforms)
        if value is not None and name in APPLY:
            APPLY[name](records, value)
    return records
