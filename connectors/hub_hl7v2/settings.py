"""``HL7v2Settings``: the connector's section of a practice mapping (its ``config_schema``).

Apart from the connector class so that importing the connector, which every command does, leaves
marshmallow out; the hub imports this module when it checks a mapping or lists the settings.
"""

from __future__ import annotations

from marshmallow import Schema, fields

from .overrides import OverridesField


class HL7v2Settings(Schema):
    timezone = fields.String(load_default=None, metadata={
        "doc": "IANA zone of date-times without an offset; overrides the practice's zone for this feed"})
    facilities = fields.List(fields.String(), load_default=list,
                             metadata={"doc": "MSH-4 sending facility ids that belong to this practice"})
    overrides = OverridesField(load_default=dict, metadata={
        "doc": "where this practice sends a field the standard places elsewhere (hub mapping names)"})
