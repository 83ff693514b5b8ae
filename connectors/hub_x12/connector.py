"""The X12 connector (the package's docstring says what it reads and how).

Apart from the plugin module (``hub_x12/__init__.py``), which every command imports to list the plugins'
commands: this module, its parser and its mapping are imported by ``hub_register_connectors``, when
the hub first needs the connectors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from hub.connector import Connector, Context, Envelope, Outcome, Rendered, RenderOptions, digest_key
from hub.errors import ParseError

from . import __version__
from .interchange import Transaction, looks_like_isa, read, stored_text

MEDIA_TYPES = ("application/edi-x12", "application/x12")
SUPPORTED = {"835": "005010X221", "837": "005010X222"}


class X12Connector(Connector):
    name = "x12"
    version = __version__
    media_types = MEDIA_TYPES
    file_extensions = (".x12", ".835", ".837", ".edi")
    description = "ASC X12 005010: 835 remittance advice (X221A1), 837P professional claims (X222A1)"

    @classmethod
    def detect(cls, data: bytes) -> bool:
        return looks_like_isa(data)

    # -- split ------------------------------------------------------------------
    def split(self, data: bytes, *, origin: str | None = None) -> list[Envelope]:
        sep, transactions = read(data, origin)
        return [self._envelope(t) for t in transactions]

    def _envelope(self, t: Transaction) -> Envelope:
        sender = f"{t.isa[6].strip()}^{t.gs[2].strip() if len(t.gs) > 2 else ''}"
        meta = {"set": t.set_id, "control": t.control, "group": t.gs[6] if len(t.gs) > 6 else "",
                "interchange": t.isa[13], "version": t.version, "index": t.index, "position": t.first,
                "key": digest_key(self.name, sender, t.separators.element, "\n".join(t.texts))}
        return Envelope(raw=stored_text(t).encode("latin-1"), sender=sender,
                        control_id=f"{t.isa[13]}/{meta['group']}/{t.control}",
                        message_type=f"{t.set_id} {t.version}".strip(), meta=meta, error=t.error)

    def dedup_key(self, envelope: Envelope) -> str:
        key = (envelope.meta or {}).get("key")
        return key if isinstance(key, str) and key else super().dedup_key(envelope)

    # -- parse and map ------------------------------------------------------------
    def parse(self, envelope: Envelope, context: Context) -> Transaction:
        if envelope.error is not None:
            raise envelope.error
        _, transactions = read(envelope.raw, context.origin)
        if len(transactions) != 1:
            raise ParseError(f"a stored X12 message holds one transaction, this one {len(transactions)}",
                             source=context.origin, location="ST")
        transaction = transactions[0]
        if transaction.error is not None:
            raise transaction.error
        return transaction

    def to_canonical(self, parsed: Transaction, context: Context) -> Iterable[dict[str, Any]]:
        set_id, version = parsed.set_id, parsed.version
        guide = SUPPORTED.get(set_id)
        if guide is None or not version.startswith(guide):
            known = ", ".join(f"{s} ({g})" for s, g in SUPPORTED.items())
            raise ParseError(f"X12 transaction set {set_id[:3]!r} of guide {version[:12]!r} is not one the hub reads "
                             f"(it reads {known})", source=context.origin, location="ST-01, transaction segment 1")
        from . import claims, remit  # the 835 and 837P mappings: not for a command that only detects content

        return list(remit.records(parsed, context) if set_id == "835" else claims.records(parsed, context))

    # -- answers --------------------------------------------------------------------
    def answer(self, results: Sequence[tuple[Envelope, Outcome]]) -> tuple[bytes, str] | None:
        """The file's acceptance report (JSON), in the spirit of a 999."""
        return orjson.dumps(acceptance_report(results)), "application/json"

    def render(self, records: Sequence[Mapping[str, Any]], *, options: RenderOptions) -> list[Rendered]:
        """Sample 835 files of the remittance records, one per month: see ``hub_x12.render``."""
        from .render import render_files  # the demo's and the tests' samples: not every command's import

        return render_files(records, options)

    def findings(self, envelope: Envelope, context: Context) -> list[str]:
        from .validate import guide_findings  # pyx12 (a heavy import) only for onboarding checks

        if envelope.error is not None:
            return [f"{envelope.error.location or 'ISA'}: {envelope.error.message}"]
        return guide_findings(envelope.raw.decode("latin-1"))


def acceptance_report(results: Sequence[tuple[Envelope, Outcome]]) -> dict[str, Any]:
    """What a file's transactions became: ``{accepted, duplicate, rejected, transactions: [{set, control,
    group, interchange, status, message_id, error, location}]}``, without patient data."""
    rows = []
    for envelope, outcome in results:
        meta = envelope.meta or {}
        status = "duplicate" if outcome.duplicate else "accepted" if outcome.accepted else "rejected"
        row: dict[str, Any] = {"set": meta.get("set"), "control": meta.get("control"), "group": meta.get("group"),
                               "interchange": meta.get("interchange"), "status": status,
                               "message_id": outcome.message_id}
        if outcome.error:
            row["error"] = outcome.error
        if outcome.error_location:
            row["location"] = outcome.error_location
        rows.append(row)
    count = {s: sum(1 for r in rows if r["status"] == s) for s in ("accepted", "duplicate", "rejected")}
    return {**count, "transactions": rows}


