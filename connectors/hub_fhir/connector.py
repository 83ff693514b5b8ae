"""The FHIR R4 connector (the package's docstring says what it reads and how).

Apart from the plugin module (``hub_fhir/__init__.py``), which every command imports to list the plugins'
commands: this module, its parser and its mapping are imported by ``hub_register_connectors``, when
the hub first needs the connectors."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from hub.connector import Connector, Context, Envelope, ImportedOnRead, Outcome, Rendered, RenderOptions, digest_key
from hub.errors import ConfigError, HubError, ValidationError
from hub.settings import connector_env

# Every command that reads content imports this module to ask ``detect`` (an HL7 v2 file too), which needs
# ``bundle`` only: the mapping, the validation (fhir.resources at the first validation) and the answers are
# imported by the methods that use them, the pull and render by the commands that use them
from . import __version__, bundle
from .bundle import Item, Payload, References

if TYPE_CHECKING:
    from .pull import FhirPoller

_T = TypeVar("_T")


@functools.cache
def supported() -> frozenset[str]:
    """The resource types the hub maps."""
    from .mapping import MAPPERS

    return frozenset(MAPPERS)


@functools.cache
def hub_needs() -> dict[str, frozenset[str]]:
    """Top-level elements a record cannot do without (the common model requires what they give): when one
    fails R4 validation the resource is left out whole, with the FHIR reason, rather than mapped without it."""
    from .validate import NEEDED

    return {
        "Appointment": NEEDED | {"start"},
        "ChargeItem": NEEDED | {"occurrenceDateTime", "occurrencePeriod"},
        "Slot": NEEDED | {"start", "end"},
    }


def validation_enabled(config: Any, env: Mapping[str, Any] | None = None) -> bool:
    """False when HUB_FHIR_VALIDATE turns validation off, or the practice's section does. ``env``: the
    values the environment gives (``connector_env``), taken once by the caller; else read now."""
    if (env if env is not None else connector_env(FhirConnector.config_schema)).get("validate") is False:
        return False
    value = (config or {}).get("validate", True)
    return not (value is False or str(value).strip().lower() in ("0", "false", "no", "off"))


def _nesting_bounded(step: Callable[..., _T]) -> Callable[..., _T]:
    """JSON nests as deep as orjson reads (1024 levels), deeper than the validator and the mapping can
    follow (an extension inside an extension, 200 levels down): refused by name, not as a connector bug."""

    @functools.wraps(step)
    def bounded(*args: Any, **kwargs: Any) -> _T:
        try:
            return step(*args, **kwargs)
        except RecursionError:
            raise ValidationError("the resource nests too deeply to be read (elements inside elements, "
                                  "hundreds of levels down)") from None

    return bounded


class FhirConnector(Connector):
    name = "fhir"
    version = __version__
    media_types = ("application/fhir+json", "application/json+fhir")
    file_extensions = (".json",)
    config_schema = ImportedOnRead("hub_fhir.settings:FhirConfigSchema")  # marshmallow: imported when read
    description = "FHIR R4 JSON: a resource or a Bundle (transaction, batch, collection, searchset, message, history)"

    def __init__(self) -> None:
        super().__init__()
        self.env = connector_env(self.config_schema)  # HUB_FHIR_*: read once per connector, not per message

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

    @_nesting_bounded
    def parse(self, envelope: Envelope, context: Context) -> Payload:
        """The resources to map, validated (see the module docstring): entries that carry none are
        skipped and said in the tally's notes; a message left with nothing to take in is refused."""
        payload = bundle.items_of(bundle.read(envelope.raw), strict=context.strict)
        kind = payload.bundle_type
        if kind is not None and not payload.items and not payload.skipped:
            if kind not in ("searchset", "history"):  # an empty search or history answers "nothing new"
                raise ValidationError(f"the {kind} Bundle has no entries: nothing to take in", location="Bundle.entry")
            context.tally.notes.append(f"the {kind} Bundle has no entries")
        if validation_enabled(context.config, self.env):
            payload.items = self._valid_items(payload, context)
        if payload.skipped:
            if not payload.items:
                first = next(iter(payload.skipped.values()))[0]
                raise ValidationError(f"nothing to take in: {payload.notes()[0]}", location=first)
            context.tally.notes.extend(payload.notes())
        return payload

    def _valid_items(self, payload: Payload, context: Context) -> list[Item]:
        """The items to map once validated. Types the hub does not map are not validated (they are
        only counted, in ``to_canonical``). A mapped resource that fails R4 validation refuses the
        message when it is all or nothing (a strict mapping, a transaction); otherwise its invalid
        optional elements are left out (``validate_lenient``), or the resource itself when what fails
        is required, each recorded with ``tally.drop``, and the rest is kept. A message whose mapped
        resources are all invalid is refused with the first one's reason."""
        from .mapping import MAPPERS
        from .validate import NEEDED, is_fhir_type, validate_lenient, validate_resource

        all_or_nothing = context.strict or payload.bundle_type == "transaction"
        kept: list[Item] = []
        refused: list[ValidationError] = []
        for item in payload.items:
            if item.type not in MAPPERS:
                if not is_fhir_type(item.type):
                    if payload.bundle_type is None:
                        validate_resource(item.resource, item.path)  # refused: not an R4 resource type
                    context.tally.notes.append(f"{item.path}: {item.type[:60]!r} is not a FHIR R4 resource type")
                kept.append(item)
                continue
            if all_or_nothing:
                validate_resource(item.resource, item.path)
                kept.append(item)
                continue
            try:
                resource, dropped = validate_lenient(item.resource, item.path, hub_needs().get(item.type, NEEDED))
            except ValidationError as exc:
                refused.append(exc)
                context.tally.drop(item.path, f"left out whole: {exc.message}")
                continue
            for path, reason in dropped:
                context.tally.drop(path, reason)
            kept.append(item if resource is item.resource else Item(resource, item.path, item.full_url))
        if refused and not any(item.type in MAPPERS for item in kept):
            raise refused[0]
        return kept

    @_nesting_bounded
    def to_canonical(self, parsed: Payload, context: Context) -> list[dict[str, Any]]:
        from .mapping import MAPPERS, MapContext, event_time, merge, timezone_of

        refs = References.of(parsed.items)
        tz = timezone_of((context.config or {}).get("timezone"))
        records: list[dict[str, Any]] = []
        skipped: Counter[str] = Counter()
        for item in parsed.items:
            mapper = MAPPERS.get(item.type)
            if mapper is None:
                skipped[item.type[:60]] += 1
                context.tally.skip(item.type[:60])
                continue
            ctx = MapContext(refs, item, tz, context.tally)
            when = event_time(item.resource, ctx, parsed.timestamp)
            for record in mapper(item.resource, ctx):
                if when is not None:
                    record["event_time"] = when
                    if record["kind"] == "patient_merge":  # a Patient.link merge: when the Patient said so
                        record["merged_at"] = when
                records.append(record)
        if skipped:
            listed = ", ".join(sorted(skipped))
            if sum(skipped.values()) == len(parsed.items):
                raise ValidationError(f"unsupported resource type {listed}: kept in the message store, not mapped "
                                      f"(mapped types: {', '.join(sorted(supported()))})",
                                      location=parsed.items[0].path)
            self.log.debug("skipped %d resource(s) of unsupported type(s): %s", sum(skipped.values()), listed)
        return merge(records)

    def acknowledge(self, envelope: Envelope, outcome_: Outcome) -> bytes | None:
        from . import outcome

        return orjson.dumps(outcome.operation_outcome(outcome_, outcome.unsupported_notes(envelope, supported())))

    def answer(self, results: Sequence[tuple[Envelope, Outcome]]) -> tuple[bytes, str] | None:
        from . import outcome

        return outcome.answer(results, supported())

    def answer_status(self, results: Sequence[tuple[Envelope, Outcome]]) -> int:
        """The HTTP status of ``answer`` (hub.api.intake): 400 or 422 for a refused resource or transaction."""
        from . import outcome

        return outcome.http_status(results)

    def findings(self, envelope: Envelope, context: Context) -> list[str]:
        from .mapping import MAPPERS
        from .validate import validate_resource

        try:
            payload = bundle.items_of(bundle.load(envelope.raw))
        except HubError as exc:
            return [str(exc)]
        found = []
        for item in payload.items:
            if item.type not in MAPPERS:
                continue  # not read by the hub: nothing the practice needs to fix for it
            try:  # strict: a time sent without an offset is worth asking the practice about
                validate_resource(item.resource, item.path, strict=True)
            except HubError as exc:
                found.append(str(exc))
        return found

    def render(self, records: Sequence[Mapping[str, Any]], *, options: RenderOptions) -> list[Rendered]:
        """Sample transaction Bundles, one per day, of the records: see ``hub_fhir.render``."""
        from .render import render_files  # the demo's and the tests' samples: not every command's import

        return render_files(records, options)

    def poller(self, settings: Mapping[str, Any]) -> FhirPoller:
        """``hub fhir pull``: reads the practice's FHIR server at ``base_url`` (``--base`` over the setting)."""
        from .pull import FhirPoller

        base = settings.get("base_url")
        if not base or not str(base).startswith(("http://", "https://")):
            raise ConfigError("give --base URL (http or https), or base_url in the practice's fhir connector settings")
        return FhirPoller(str(base), settings)




