"""``FhirConfigSchema``: the connector's section of a practice mapping (its ``config_schema``).

Apart from the connector class so that importing the connector, which every command does, leaves
marshmallow out; the hub imports this module when it checks a mapping or lists the settings.
"""

from __future__ import annotations

from marshmallow import Schema, fields


class FhirConfigSchema(Schema):
    """The ``connectors: {fhir: ...}`` section of a practice mapping."""

    # data_key: a field named "validate" would hide Schema.validate()
    validate_resources = fields.Boolean(data_key="validate", load_default=True, metadata={
        "doc": "validate each resource against the R4 models", "env": "HUB_FHIR_VALIDATE",
        "env_doc": "`0` skips the R4 model validation (trusted backfills) for every practice; see [fhir.md](fhir.md)"})
    timezone = fields.String(metadata={"doc": "IANA zone for date-times sent without an offset; overrides the "
                                              "practice's zone for this feed"})
    base_url = fields.String(metadata={"doc": "the practice's FHIR server, for hub fhir pull"})
    token = fields.String(metadata={"secret": True, "doc": "bearer token (or HUB_FHIR_TOKEN)", "env": "HUB_FHIR_TOKEN",
                                    "env_doc": "bearer token for `hub fhir pull`"})
    client_id = fields.String(metadata={"doc": "SMART backend services client id (or HUB_FHIR_CLIENT_ID)",
                                        "env": "HUB_FHIR_CLIENT_ID", "env_doc": "SMART backend services client id"})
    token_url = fields.String(metadata={
        "doc": "SMART token endpoint (or HUB_FHIR_TOKEN_URL)", "env": "HUB_FHIR_TOKEN_URL",
        "env_doc": "SMART backend services token endpoint"})
    private_key = fields.String(metadata={
        "secret": True, "doc": "PEM key or its path (or HUB_FHIR_PRIVATE_KEY)", "env": "HUB_FHIR_PRIVATE_KEY",
        "env_doc": "SMART backend services signing key, PEM text or a path"})
    scope = fields.String(metadata={"doc": "SMART scope, default system/*.read"})
    page_size = fields.Integer(metadata={"doc": "_count asked of the server, default 100"})
    resource_types = fields.List(fields.String(), metadata={"doc": "types to pull, default all mapped types"})
