"""The HL7 v2 connector (the package's docstring says what it reads and how).

Apart from the plugin module (``hub_hl7v2/__init__.py``), which every command imports to list the plugins'
commands: this module, its parser and its mapping are imported by ``hub_register_connectors``, when
the hub first needs the connectors."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hub.connector import Connector, Context, Envelope, ImportedOnRead, Outcome, Rendered, RenderOptions, digest_key
from hub.errors import ParseError

from . import __version__, er7
from .ack import build_ack, header_of
from .mapping import to_records
from .overrides import apply_overrides
from .values import zone

MEDIA_TYPES = ("x-application/hl7-v2+er7", "application/hl7-v2", "application/edi-hl7")
_LINE = re.compile(rb"\r\n|\n|\r")
_BATCH_LINE = re.compile(rb"(?<![^\r\n])(?:FHS|BHS|BTS|FTS)[^\r\n]*[\r\n]*")
# MSH, its field separator, three to five encoding characters and the separator again, at the start of a
# line or after at most 16 bytes of a vendor prefix (no quote, brace or angle bracket: not JSON or XML)
_MSH_ANYWHERE = re.compile(rb"(?:^|[\r\n])([^\r\n\"{}<>]{0,16}?)(MSH)([^\w\s])[^\w\s]{3,5}?\3")
_LOOK_AHEAD = 4096  # bytes detect() reads for an MSH after a comment or prefix
_BATCH_IDS = frozenset({b"FHS", b"BHS", b"BTS", b"FTS"})


class HL7v2Connector(Connector):
    name = "hl7v2"
    version = __version__
    media_types = MEDIA_TYPES
    file_extensions = (".hl7", ".er7")
    config_schema = ImportedOnRead("hub_hl7v2.settings:HL7v2Settings")  # marshmallow: when a mapping is checked
    description = "HL7 v2.3–2.8 ER7: ADT, SIU, DFT, REF (other types: the patient and visit they carry)"
    unique_control_ids = True  # MSH-10 names one message of its sender
    fresh_records = True  # to_records makes a new list of new dicts for each message (each dict once)
    cannot_carry = {  # a DFT^P03 payment posting: FT1 transactions of type PY (payment) and AJ (adjustment)
        "remittance.denied": "HL7 v2 DFT payment postings carry no denials",
        "remittance.adjustments": "HL7 v2 DFT adjustments carry an amount, not their CARC group and reason",
    }

    @classmethod
    def detect(cls, data: bytes) -> bool:
        head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n\x0b")
        if head[:3] in (b"MSH", b"FHS", b"BHS") and len(head) > 3 and not head[3:4].isalnum():
            return True
        # a comment, a vendor prefix or blank lines before the first MSH (split says what it skipped)
        head = data[:_LOOK_AHEAD].lstrip(b"\xef\xbb\xbf \t\r\n\x0b")
        return head[:1] not in (b"{", b"<") and _first_msh(head) is not None

    # -- split ------------------------------------------------------------------
    def split(self, data: bytes, *, origin: str | None = None) -> list[Envelope]:
        body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
        body = body.strip(b" \t\r\n\x0b\x1c")  # MLLP framing bytes left on a payload posted over HTTP
        if body.find(b"\n") < 0:  # ``find``: ``in`` on bytes costs an error raised and cleared (below)
            # the usual payload: one message, its segments ended by CR. Its lines split once (memchr) rather
            # than the three scans below (message starts, batch lines); the first line is the header's
            lines = body.split(b"\r")
            heads = [line[:3] for line in lines]
            if heads[0] == b"MSH" and heads.count(b"MSH") == 1 and _BATCH_IDS.isdisjoint(heads) and \
                    body.strip() is body:  # nothing left for the general path's ``strip`` to take
                envelope = self._envelope(body, "", origin, "", lines[0])
                if envelope.error is not None:
                    raise envelope.error  # a payload of one message: refused whole
                return [envelope]
        starts, note = _message_starts(body), ""
        if not starts or (starts[0] and _BATCH_LINE.sub(b"", body[:starts[0]]).strip()):
            first = _first_msh(body)  # after a comment line or a vendor prefix such as "[SOM]"
            if first is None:
                raise ParseError("no MSH segment: this is not an HL7 v2 message", source=origin, location="MSH")
            starts = [first] + [s for s in starts if s > first]
            skipped = _BATCH_LINE.sub(b"", body[:first]).strip()
            if skipped:  # counts only: the text skipped may hold anything
                note = (f"skipped {len(skipped)} bytes ({len(_LINE.split(skipped))} lines) before the first "
                        "MSH segment (a comment or vendor prefix)")
                self.log.warning("%s: %s", origin or "payload", note)
        envelopes = []
        many = len(starts) > 1
        for index, start in enumerate(starts):
            end = starts[index + 1] if index + 1 < len(starts) else len(body)
            chunk = body[start:end]
            # ``find``, not ``in``: ``in`` on bytes first tries its operand as an integer (an error raised
            # and cleared each time); "TS" first: a scan less, usually
            if (chunk.find(b"TS") >= 0 and (chunk.find(b"BTS") >= 0 or chunk.find(b"FTS") >= 0)) or \
                    chunk.find(b"BHS") >= 0:
                chunk = _BATCH_LINE.sub(b"", chunk)
            envelope = self._envelope(chunk.strip(), f"message {index + 1}, " if many else "", origin,
                                      note if index == 0 else "")
            if envelope.error is not None and not many:
                raise envelope.error  # a payload of one message: refused whole, as before
            envelopes.append(envelope)  # in a batch, a bad message is refused alone (by its index)
        return envelopes

    def _envelope(self, raw: bytes, where: str, origin: str | None, skipped: str = "",
                  first: bytes | None = None) -> Envelope:
        """The envelope of one message; an unreadable one carries its ``error`` (MSH field, by index).
        ``skipped``: what was skipped before it (``meta["skipped"]``, reported by ``findings``); ``first``:
        its first line when ``split`` has it."""
        if first is None:  # the first line: up to the first CR or LF (as ``_LINE`` splits it, without a scan)
            end = raw.find(b"\r")
            first = raw[:end] if end >= 0 else raw
            end = first.find(b"\n")
            if end >= 0:
                first = first[:end]
        line = first.decode("latin-1")
        try:
            sep = er7.read_separators(line)
        except ParseError as exc:
            exc.location = where + (exc.location or "MSH")
            exc.source = origin
            return Envelope(raw=raw, error=exc)
        header = header_of(line.split(sep.field), sep)
        cs, facility, app = sep.component, header["sending_facility"], header["sending_app"]
        header["facility"] = facility = facility.split(cs, 1)[0] if cs in facility else facility
        if skipped:
            header["skipped"] = skipped
        sender = f"{app.split(cs, 1)[0] if cs in app else app}^{facility}"
        message_type = f"{header['message_code']}^{header['trigger']}" if header["trigger"] else \
            header["message_code"]
        error = None
        if not header["message_code"]:
            error = ParseError("MSH-9 (message type) is missing", source=origin, location=f"{where}MSH-9")
        elif not header["control_id"]:
            error = ParseError("MSH-10 (message control id) is missing", source=origin, location=f"{where}MSH-10")
        elif len(line) == len(raw) and er7.run_together(line, sep.field):  # one line: no segment terminator
            error = ParseError(er7.RUN_TOGETHER, source=origin, location=f"{where}MSH")
        return Envelope(raw, sender, header["control_id"] or None, message_type or None, header, error)

    def dedup_key(self, envelope: Envelope) -> str:
        if not envelope.control_id:
            return super().dedup_key(envelope)
        # the segments, not their terminators: a file saved with LF is the message sent over MLLP with CR
        segments = envelope.raw
        if segments.find(b"\n") >= 0:  # ``find``: ``in`` on bytes costs an error raised and cleared (``split``)
            segments = segments.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
        while segments.find(b"\r\r") >= 0:  # blank lines
            segments = segments.replace(b"\r\r", b"\r")
        return digest_key(self.name, envelope.sender or "", envelope.control_id, segments)

    # -- parse and map ------------------------------------------------------------
    def parse(self, envelope: Envelope, context: Context) -> er7.Message:
        skipped = envelope.meta.get("skipped") if envelope.meta else None
        if skipped:  # what split skipped before the first MSH, on the message's record
            context.tally.notes.append(skipped)
        return er7.parse_bytes(envelope.raw)

    def to_canonical(self, parsed: er7.Message, context: Context) -> Iterable[dict[str, Any]]:
        config = context.config or {}  # read only: no copy
        records = to_records(parsed, zone(config.get("timezone")), context.tally, context.strict)
        return apply_overrides(parsed, records, dict(config)) if config.get("overrides") else records

    # -- answers --------------------------------------------------------------------
    def acknowledge(self, envelope: Envelope, outcome: Outcome) -> bytes:
        return build_ack(envelope, outcome)

    def findings(self, envelope: Envelope, context: Context) -> list[str]:
        from .structure import structural_findings  # hl7apy (a heavy import) only for onboarding checks

        skipped = (envelope.meta or {}).get("skipped")
        return ([f"MSH: {skipped}"] if skipped else []) + structural_findings(envelope.raw)

    def render(self, records: Sequence[Mapping[str, Any]], *, options: RenderOptions) -> list[Rendered]:
        """Sample v2.5.1 batch files (SIU, REF, DFT) of the records: see ``hub_hl7v2.render``."""
        from .render import render_files  # the demo's and the tests' samples: not every command's import

        return render_files(records, options)


def _first_msh(body: bytes) -> int | None:
    """Offset of the first MSH segment that may follow other text: at the start of a line, or after a
    short vendor prefix on its line (``[SOM]MSH|...``); None when there is none."""
    found = _MSH_ANYWHERE.search(body)
    return found.start(2) if found else None


def _message_starts(body: bytes) -> list[int]:
    """Offsets of MSH at the start of the payload or right after a line break (a find loop: a regex
    with a look-behind costs more than the rest of the split)."""
    starts = []
    at = body.find(b"MSH")
    while at >= 0:
        if at == 0 or body[at - 1] in (13, 10):
            starts.append(at)
        at = body.find(b"MSH", at + 3)
    return starts


