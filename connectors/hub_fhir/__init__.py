"""FHIR R4 connector: single resources and Bundles, pushed (HTTP, files) or pulled (``hub fhir pull``).

Settings (the ``connectors: {fhir: {...}}`` section of a practice mapping, see
``FhirConfigSchema``; environment variables where noted):

- ``validate`` (default true; ``HUB_FHIR_VALIDATE=0`` turns it off everywhere): validate every
  resource against the R4 models at intake. ``false`` is the backfill mode for trusted history:
  records are mapped straight from the JSON, about eight times faster in the connector.
- ``timezone``: IANA zone given to date-times sent without an offset, overriding the practice's
  zone for this feed. Unset (the usual case), such times are emitted without an offset and the
  hub reads them in the practice's zone.
- pull: ``base_url``, ``token`` (``HUB_FHIR_TOKEN``), SMART backend services ``client_id``
  (``HUB_FHIR_CLIENT_ID``), ``token_url`` (``HUB_FHIR_TOKEN_URL``), ``private_key``
  (``HUB_FHIR_PRIVATE_KEY``, PEM text or a file path), ``scope``, ``page_size``, ``resource_types``.

Unsupported resource types (valid FHIR the hub does not map, such as Observation): a
message that is nothing but such a resource is kept in the message store as ``error`` with
the reason ``unsupported resource type X`` (reprocessable once a mapping exists); inside a
Bundle they are skipped, logged by type and named in the answer, and the rest is mapped.

Event time: every record carries the ``meta.lastUpdated`` of the resource it comes from, else
the enclosing Bundle's ``timestamp``, else none (the hub then uses the arrival time).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

import orjson
from marshmallow import Schema, fields

from hub import hookimpl
from hub.connector import Connector, Context, Envelope, Outcome, digest_key
from hub.errors import HubError, ValidationError

from . import bundle, outcome
from .bundle import Payload, References
from .mapping import MAPPERS, MapContext, event_time, merge, timezone_of
from .validate import validate_resource

__version__ = "1.0.0"
SUPPORTED = frozenset(MAPPERS)


class FhirConfigSchema(Schema):
    """The ``connectors: {fhir: ...}`` section of a practice mapping."""

    # data_key: a field named "validate" would hide Schema.validate()
    validate_resources = fields.Boolean(data_key="validate", load_default=True,
                                        metadata={"doc": "validate each resource against the R4 models"})
    timezone = fields.String(metadata={"doc": "IANA zone for date-times sent without an offset; overrides the "
                                              "practice's zone for this feed"})
    base_url = fields.String(metadata={"doc": "the practice's FHIR server, for hub fhir pull"})
    token = fields.String(metadata={"secret": True, "doc": "bearer token (or HUB_FHIR_TOKEN)"})
    client_id = fields.String(metadata={"doc": "SMART backend services client id (or HUB_FHIR_CLIENT_ID)"})
    token_url = fields.String(metadata={"doc": "SMART token endpoint (or HUB_FHIR_TOKEN_URL)"})
    private_key = fields.String(metadata={"secret": True, "doc": "PEM key or its path (or HUB_FHIR_PRIVATE_KEY)"})
    scope = fields.String(metadata={"doc": "SMART scope, default system/*.read"})
    page_size = fields.Integer(metadata={"doc": "_count asked of the server, default 100"})
    resource_types = fields.List(fields.String(), metadata={"doc": "types to pull, default all mapped types"})


def validation_enabled(config: Any) -> bool:
    if os.environ.get("HUB_FHIR_VALIDATE", "").strip().lower() in ("0", "false", "no", "off"):
        return False
    value = (config or {}).get("validate", True)
    return not (value is False or str(value).strip().lower() in ("0", "false", "no", "off"))


class FhirConnector(Connector):
    name = "fhir"
    version = __version__
    media_types = ("application/fhir+json", "application/json+fhir")
    file_extensions = (".json",)
    config_schema: ClassVar[type | None] = FhirConfigSchema
    description = "FHIR R4 JSON: a resource or a Bundle (transaction, batch, collection, searchset, message, history)"

    @classmethod
    def detect(cls, data: bytes) -> bool:
        head = data[:65536]
        if head.startswith(bundle.BOM):
            head = head[len(bundle.BOM):]
        return head.lstrip().startswith(b"{") and b'"resourceType"' in head

    def split(self, data: bytes, *, origin: str | None = None) -> list[Envelope]:
        return bundle.split(data)

    def dedup_key(self, envelope: Envelope) -> str:
        """The resource versions the message carries (see ``bundle.versions_of``), else its bytes."""
        versions = envelope.meta.get("versions")
        return digest_key(self.name, versions) if isinstance(versions, str) else super().dedup_key(envelope)

    def parse(self, envelope: Envelope, context: Context) -> Payload:
        payload = bundle.items_of(bundle.read(envelope.raw))
        if validation_enabled(context.config):
            for item in payload.items:
                validate_resource(item.resource, item.path)
        return payload

    def to_canonical(self, parsed: Payload, context: Context) -> list[dict[str, Any]]:
        refs = References.of(parsed.items)
        tz = timezone_of((context.config or {}).get("timezone"))
        records: list[dict[str, Any]] = []
        skipped: Counter[str] = Counter()
        for item in parsed.items:
            mapper = MAPPERS.get(item.type)
            if mapper is None:
                skipped[item.type[:60]] += 1
                continue
            ctx = MapContext(refs, item, tz)
            when = event_time(item.resource, ctx, parsed.timestamp)
            for record in mapper(item.resource, ctx):
                if when is not None:
                    record["event_time"] = when
                records.append(record)
        if skipped:
            listed = ", ".join(sorted(skipped))
            if sum(skipped.values()) == len(parsed.items):
                raise ValidationError(f"unsupported resource type {listed}: kept in the message store, not mapped "
                                      f"(mapped types: {', '.join(sorted(SUPPORTED))})",
                                      location=parsed.items[0].path)
            self.log.info("skipped %d resource(s) of unsupported type(s): %s", sum(skipped.values()), listed)
        return merge(records)

    def acknowledge(self, envelope: Envelope, outcome_: Outcome) -> bytes | None:
        return orjson.dumps(outcome.operation_outcome(outcome_, outcome.unsupported_notes(envelope, SUPPORTED)))

    def answer(self, results: Sequence[tuple[Envelope, Outcome]]) -> tuple[bytes, str] | None:
        return outcome.answer(results, SUPPORTED)

    def findings(self, envelope: Envelope, context: Context) -> list[str]:
        try:
            payload = bundle.items_of(bundle.load(envelope.raw))
        except HubError as exc:
            return [str(exc)]
        found = []
        for item in payload.items:
            try:  # strict: a time sent without an offset is worth asking the practice about
                validate_resource(item.resource, item.path, strict=True)
            except HubError as exc:
                found.append(str(exc))
        return found


@hookimpl
def hub_register_connectors(registry: Any) -> None:
    registry.add(FhirConnector)


@hookimpl
def hub_cli_commands(cli: Any) -> None:
    from .cli import fhir_group

    cli.add_command(fhir_group)
