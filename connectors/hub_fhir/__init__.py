"""FHIR R4 connector: single resources and Bundles, pushed (HTTP, files) or pulled (``hub fhir pull``).

Settings (the ``connectors: {fhir: {...}}`` section of a practice mapping, see
``FhirConfigSchema``, checked by the hub when a mapping is loaded; environment variables where
noted, declared as the fields' ``env`` and read through ``hub.settings``; secrets never shown):

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

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import orjson
from marshmallow import Schema, fields

from hub import hookimpl
from hub.connector import Connector, Context, Envelope, Outcome, PullService, Rendered, RenderOptions, digest_key
from hub.errors import ConfigError, HubError, ValidationError
from hub.settings import connector_env

from . import bundle, outcome
from .bundle import Payload, References
from .cli import fhir_group
from .mapping import MAPPERS, MapContext, event_time, merge, timezone_of
from .pull import FhirPoller
from .render import render_files
from .validate import validate_resource

__version__ = "1.0.0"
SUPPORTED = frozenset(MAPPERS)


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


def validation_enabled(config: Any, env: Mapping[str, Any] | None = None) -> bool:
    """False when HUB_FHIR_VALIDATE turns validation off, or the practice's section does. ``env``: the
    values the environment gives (``connector_env``), taken once by the caller; else read now."""
    if (env if env is not None else connector_env(FhirConfigSchema)).get("validate") is False:
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

    def __init__(self) -> None:
        super().__init__()
        self.env = connector_env(FhirConfigSchema)  # HUB_FHIR_*: read once per connector, not per message

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
        if validation_enabled(context.config, self.env):
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

    def render(self, records: Sequence[Mapping[str, Any]], *, options: RenderOptions) -> list[Rendered]:
        """Sample transaction Bundles, one per day, of the records: see ``hub_fhir.render``."""
        return render_files(records, options)

    def poller(self, settings: Mapping[str, Any]) -> FhirPoller:
        """``hub fhir pull``: reads the practice's FHIR server at ``base_url`` (``--base`` over the setting)."""
        base = settings.get("base_url")
        if not base or not str(base).startswith(("http://", "https://")):
            raise ConfigError("give --base URL (http or https), or base_url in the practice's fhir connector settings")
        return FhirPoller(str(base), settings)


@hookimpl
def hub_register_connectors(registry: Any) -> None:
    registry.add(FhirConnector)


@hookimpl
def hub_cli_commands(cli: Any, pull: PullService) -> None:
    cli.add_command(fhir_group(pull))
