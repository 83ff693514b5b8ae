"""``HL7v2Settings``: the connector's section of a practice mapping (its ``config_schema``).

Apart from the connector class so that importing the connector, which every command does, leaves
marshmallow out; the hub imports this module when it checks a mapping or lists the settings.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields

from hub.mapping.schema import check_hl7v2_overrides


class OverridesField(fields.Field):
    """The ``overrides`` setting of the connector's section: each name of ``hub mapping names`` → an
    HL7 path or ``{from: PATH, transform: NAME | [NAMES]}``; every problem named by its key."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        errors = check_hl7v2_overrides(value)
        if errors.tree:
            raise ValidationError(errors.tree)
        return value


class HL7v2Settings(Schema):
    timezone = fields.String(load_default=None, metadata={
        "doc": "IANA zone of date-times without an offset; overrides the practice's zone for this feed"})
    facilities = fields.List(fields.String(), load_default=list,
                             metadata={"doc": "MSH-4 sending facility ids that belong to this practice"})
    overrides = OverridesField(load_default=dict, metadata={
        "doc": "where this practice sends a field the standard places elsewhere (hub mapping names)"})
