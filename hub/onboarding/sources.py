"""Where the scorecard's messages come from: sample files (dry run) or the message store."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from hub.connector import Connector, Context, Envelope
from hub.errors import HubError, ParseError
from hub.files import iter_files
from hub.mapping import Mapping, load_mapping
from hub.model.tables import messages
from hub.onboarding.scorecard import ScorecardBuilder
from hub.pipeline.normalize import choose_connector, normalize_envelope
from hub.plugins import Plugins
from hub.store.messages import CONTROL_ID_REUSED
from hub.store.practices import get_practice

if TYPE_CHECKING:
    from hub.runtime import Runtime


def pick_connector(plugins: Plugins, path: Path, data: bytes, name: str | None = None) -> Connector:
    """``--connector`` if given; else the content; else the file extension (a CSV says nothing itself)."""
    if name:
        return plugins.connectors.get(name)
    try:
        return choose_connector(plugins, data, origin=str(path))
    except ParseError:
        suffix = path.suffix.lower()
        owners = [c for c in plugins.connectors.classes() if suffix and suffix in c.file_extensions]
        if len(owners) == 1:
            return plugins.connectors.get(owners[0].name)
        raise


def export_rows(connector: Connector) -> bool:
    """The connector's messages are rows of practice-system exports (``export_rows``, the CSV connector): a
    row repeated by a later export is no resend (see ``hub.onboarding.scorecard``)."""
    return connector.export_rows


def _label(envelope: Envelope, origin: str) -> str:
    return f"{origin} {envelope.control_id}" if envelope.control_id and envelope.control_id.startswith(
        "line ") else origin


def check_files(plugins: Plugins, practice: str, mapping: Mapping, paths: Sequence[str], *,
                connector: str | None = None, findings: bool = True,
                stream_above: int = 64 * 1024 * 1024, timezone: str | None = None) -> dict[str, Any]:
    """Dry-run sample files through the real connectors and mapping; nothing is stored.
    ``timezone``: the practice's, in which times sent without an offset are read."""
    timezone = mapping.practice_zone(timezone)
    card = ScorecardBuilder(practice, mapping, source="files", timezone=timezone)
    for path in iter_files(paths):
        for data, origin in _payloads(plugins, path, connector, mapping, stream_above):
            try:
                chosen = pick_connector(plugins, path, data, connector)
                envelopes = chosen.split(data, origin=origin)
            except HubError as exc:
                exc.source = exc.source or str(path)
                card.add(Envelope(raw=data), [], exc, label=str(path))  # keyed by its bytes, as intake does
                continue
            context = Context(practice=practice, config=mapping.connector_config(chosen.name), origin=origin)
            for envelope in envelopes:
                done = normalize_envelope(plugins, chosen, envelope, practice=practice, mapping=mapping,
                                          origin=origin, timezone=timezone, count_offsets=True)
                fresh = card.add(envelope, done.records, done.error, label=_label(envelope, str(path)),
                                 without_offset=done.without_offset, key=chosen.store_key(envelope),
                                 unique_control_ids=chosen.unique_control_ids, export_rows=export_rows(chosen),
                                 origin=origin, tally=done.tally)
                if findings and fresh:
                    card.add_findings(_findings(chosen, envelope, context, str(path)))
    return card.result()


def _payloads(plugins: Plugins, path: Path, connector: str | None, mapping: Mapping, stream_above: int
              ) -> Iterator[tuple[bytes, str]]:
    """The file whole, or in chunks of rows when it is large and its connector can stream."""
    if path.stat().st_size > stream_above:
        with path.open("rb") as fh:
            head = fh.read(64 * 1024)
            fh.seek(0)
            try:
                chosen: Any = pick_connector(plugins, path, head, connector)
            except HubError:
                chosen = None
            if chosen is not None and hasattr(chosen, "iter_chunks"):
                encoding = mapping.connector_config(chosen.name).get("encoding")
                for payload, first in chosen.iter_chunks(fh, encoding=encoding):
                    yield payload, f"{path}#line={first}"
                return
    yield path.read_bytes(), str(path)


def _findings(connector: Connector, envelope: Envelope, context: Context, origin: str) -> list[str]:
    try:
        found = connector.findings(envelope, context)
    except Exception as exc:  # deep validation is advisory: a failure there is itself a finding
        return [f"{origin}: the {connector.name} connector's findings failed ({type(exc).__name__})"]
    return [f if f.startswith(origin) else f"{origin}: {f}" for f in found]


def check_stored(runtime: Runtime, practice: str, *, mapping: Mapping | None = None,
                 page: int = 500) -> dict[str, Any]:
    """The scorecard of every message stored for a practice, read again through its current mapping."""
    with runtime.engine.connect() as conn:
        row = get_practice(conn, practice)
        duplicates = conn.execute(sa.select(messages.c.connector, sa.func.count()).where(
            messages.c.practice == practice, messages.c.status == "duplicate").group_by(messages.c.connector)).all()
        reuses = conn.execute(sa.select(sa.func.count()).select_from(messages).where(
            messages.c.practice == practice, messages.c.flag == CONTROL_ID_REUSED)).scalar_one()
        resolved = conn.execute(sa.select(sa.func.count()).select_from(messages).where(
            messages.c.practice == practice, messages.c.status == "resolved")).scalar_one()
    mapping = mapping or load_mapping(row["mapping"], source=f"mapping of practice {practice}")
    zone = mapping.practice_zone(row["timezone"])
    card = ScorecardBuilder(practice, mapping, source="stored messages", timezone=zone)
    for name, count in duplicates:
        try:
            counted = not export_rows(runtime.plugins.connectors.get(name))
        except HubError:  # a connector no longer installed: its repeats count, as any message's
            counted = True
        card.add_duplicate(count, counted=counted)
    card.add_control_id_reuse(reuses)
    card.add_resolved(resolved)
    last_id = 0
    cols = [messages.c.id, messages.c.connector, messages.c.raw, messages.c.sender, messages.c.control_id,
            messages.c.message_type, messages.c.origin, messages.c.received_at, messages.c.dedup_key]
    while True:
        with runtime.engine.connect() as conn:
            rows = conn.execute(sa.select(*cols).where(messages.c.practice == practice, messages.c.raw.is_not(None),
                                                       messages.c.status != "resolved", messages.c.id > last_id)
                                .order_by(messages.c.id).limit(page)).all()
        if not rows:
            break
        last_id = rows[-1].id
        for r in rows:
            envelope = Envelope(raw=r.raw, sender=r.sender, control_id=r.control_id, message_type=r.message_type)
            try:
                connector = runtime.plugins.connectors.get(r.connector)
            except HubError as exc:
                card.add(envelope, [], exc, label=f"message {r.id}", key=r.dedup_key or f"#{r.id}")
                continue
            done = normalize_envelope(runtime.plugins, connector, envelope, practice=practice, mapping=mapping,
                                      message_id=r.id, origin=r.origin, timezone=zone,
                                      arrival=r.received_at, count_offsets=True)
            # the store told its duplicates apart already: each stored message counts once
            card.add(envelope, done.records, done.error, label=f"message {r.id}",
                     without_offset=done.without_offset, key=r.dedup_key or f"#{r.id}",
                     export_rows=export_rows(connector), origin=r.origin, tally=done.tally)
    return card.result()
