"""Bytes → common-model records, with nothing stored.

The one path every message takes, whether dry-run (``hub normalize``), onboarding
check or ingest: connector.normalize → mapping → plugins' identity link (``hub_link_identity``,
once per message; the hub's own patient index links in batches after storing) →
plugins' ``hub_transform_record`` → validation against the common model.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hub.connector import Connector, Context, Envelope, Tally
from hub.errors import ConfigError, HubError, ParseError, ValidationError
from hub.mapping import EMPTY, Mapping
from hub.model.schemas import sent_without_offset, validate_record
from hub.plugins import Plugins


@dataclass
class Normalized:
    """One message's records (validated, Python values), or the error that stopped it."""

    envelope: Envelope
    records: list[dict[str, Any]] = field(default_factory=list)
    error: HubError | None = None
    # date-time fields the connector gave without an offset (read in the practice's zone), by name
    without_offset: dict[str, int] = field(default_factory=dict)
    # what the message held besides its records: parts not mapped, invalid elements left out
    tally: Tally = field(default_factory=Tally)

    def __init__(self, envelope: Envelope, records: list[dict[str, Any]] | None = None, error: HubError | None = None,
                 without_offset: dict[str, int] | None = None, tally: Tally | None = None) -> None:
        # one per message: the fields set in one step (the generated ``__init__`` sets them one by one)
        self.__dict__.update({"envelope": envelope, "records": [] if records is None else records, "error": error,
                              "without_offset": {} if without_offset is None else without_offset,
                              "tally": Tally() if tally is None else tally})


@lru_cache(maxsize=256)
def practice_zone(name: str | None) -> dt.tzinfo | None:
    """The practice's IANA zone (None: the practice has none yet, and times without offset are UTC)."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder ("America")
        raise ConfigError(f"unknown time zone {name!r} (an IANA name such as America/Chicago)") from None


def choose_connector(plugins: Plugins, data: bytes, *, name: str | None = None, media_type: str | None = None,
                     origin: str | None = None) -> Connector:
    if name:
        return plugins.connectors.get(name)
    if media_type:
        found = plugins.connectors.for_media_type(media_type)
        if found is not None:
            return found
    return plugins.connectors.detect(data, origin=origin)


def record_pipeline(plugins: Plugins, mapping: Mapping, message_id: int | None, *, practice: str,
                    zone: dt.tzinfo | None = None, arrival: dt.datetime | None = None,
                    without_offset: dict[str, int] | None = None,
                    ) -> Callable[[Iterable[dict[str, Any]]], list[dict[str, Any]]]:
    """Map, link, transform and validate one message's records; date-times end in the practice's ``zone``.

    A record whose connector gave no ``event_time`` reports an event of its message's ``arrival``.
    The identity hook is called once for the message's records, ``hub_transform_record`` per record
    when a plugin implements it; both through ``Plugins.hot_caller`` (pluggy's per-call checks would
    cost more than the link itself)."""
    transform = plugins.hot_caller("hub_transform_record")
    link_identity = plugins.hot_caller("hub_link_identity")
    apply = _apply_of(mapping)
    if without_offset is None and link_identity is None and transform is None:
        # ingest's usual case (no identity or transform plugin, no count): each record in one step
        return partial(_mapped_and_validated, apply=apply, zone=zone, arrival=arrival)
    arrived: str | None = None  # the arrival as text, made when a record first needs it

    def run(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        nonlocal arrived
        mapped = []
        naive: list[list[str]] = []  # per record, as the connector sent it (counted below, as far as it gets)
        for record in records:
            if without_offset is not None:
                naive.append(sent_without_offset(record))
            if record.get("event_time") is None:
                if arrived is None:
                    arrived = (arrival or dt.datetime.now(dt.UTC)).isoformat()
                record["event_time"] = arrived
            mapped.append(record if apply is None else apply(record))
        if mapped and link_identity is not None:
            link_identity(records=mapped, practice=practice)
        out = []
        for i, record in enumerate(mapped):
            if without_offset is not None:
                for name in naive[i]:
                    without_offset[name] = without_offset.get(name, 0) + 1
            if transform is not None:
                for result in transform(record=record, practice=record["practice"], message_id=message_id):
                    if result is not None:
                        record = result
            out.append(validate_record(record, zone))
        return out

    return run


def _apply_of(mapping: Mapping) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    """``mapping.apply``, or None for a mapping with no code maps, payer patterns or defaults (a practice
    before onboarding): it leaves every record as it is, so it is not applied, record by record."""
    return mapping.apply if type(mapping) is not Mapping or mapping.code_maps or mapping.payer_patterns \
        or mapping.defaults else None


def _mapped_and_validated(records: Iterable[dict[str, Any]], apply: Callable[[dict[str, Any]], dict[str, Any]] | None,
                          zone: dt.tzinfo | None, arrival: dt.datetime | None) -> list[dict[str, Any]]:
    """Each record mapped (``apply``) and validated in one step: a record without ``event_time`` is given
    the ``arrival`` (as text, made when a record first needs it)."""
    out = []
    arrived: str | None = None
    for record in records:
        if record.get("event_time") is None:
            if arrived is None:
                arrived = (arrival or dt.datetime.now(dt.UTC)).isoformat()
            record["event_time"] = arrived
        out.append(validate_record(record if apply is None else apply(record), zone))
    return out


def normalize_envelope(plugins: Plugins, connector: Connector, envelope: Envelope, *, practice: str,
                       mapping: Mapping = EMPTY, message_id: int | None = None,
                       origin: str | None = None, timezone: str | None = None,
                       arrival: dt.datetime | None = None, count_offsets: bool = False) -> Normalized:
    """One message's records; ``timezone`` is the practice's (date-times are read and kept in it)
    and ``arrival`` when the message was received (the event time of records that carry none).
    ``count_offsets``: fill ``Normalized.without_offset`` (the onboarding scorecard; not ingest)."""
    out = Normalized(envelope)
    tally = out.tally
    # by position (practice, config, message_id, origin, strict, tally): one per message, and keywords cost more
    context = Context(practice, mapping.connector_config(connector.name), message_id, origin, mapping.strict, tally)
    if envelope.error is not None:  # split refused this one message of its payload
        out.error = envelope.error
        return out
    try:
        raw_records = connector.normalize(envelope, context)
        if context.strict and tally.invalid:  # all or nothing: the first invalid element refuses it
            path, reason = tally.invalid[0]
            raise ValidationError(f"{reason} (the practice's mapping is strict: the message is refused whole)",
                                  location=path)
        records = record_pipeline(plugins, mapping, message_id, practice=practice, zone=practice_zone(timezone),
                                  arrival=arrival, without_offset=out.without_offset if count_offsets else None
                                  )(raw_records)
        out.records = records
        tally.mapped = len(records)
    except HubError as exc:
        if exc.source is None:
            exc.source = origin
        out.error, out.records = exc, []
    except Exception as exc:  # a plugin's hub_link_identity or hub_transform_record failed: the message errs
        out.error = HubError(f"a plugin failed on a record ({type(exc).__name__}: {exc})"[:500], source=origin)
        out.records = []
    return out


def normalize_payload(plugins: Plugins, data: bytes, *, practice: str, connector: str | None = None,
                      media_type: str | None = None, mapping: Mapping = EMPTY,
                      origin: str | None = None, timezone: str | None = None) -> list[Normalized]:
    """Split a payload into its messages and normalize each (``hub normalize``)."""
    chosen = choose_connector(plugins, data, name=connector, media_type=media_type, origin=origin)
    try:
        envelopes = chosen.split(data, origin=origin)
    except HubError as exc:
        exc.source = exc.source or origin
        return [Normalized(Envelope(raw=data), error=exc)]
    except Exception as exc:
        return [Normalized(Envelope(raw=data), error=ParseError(
            f"{chosen.name} connector could not split the payload ({type(exc).__name__})", source=origin))]
    arrival = dt.datetime.now(dt.UTC)
    return [normalize_envelope(plugins, chosen, env, practice=practice, mapping=mapping, origin=origin,
                               timezone=timezone, arrival=arrival) for env in envelopes]
