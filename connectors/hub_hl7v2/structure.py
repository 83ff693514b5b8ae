"""Deep structural validation with hl7apy, for the onboarding check of a practice's sample feed.

Slow (hl7apy builds and checks the whole tree: tens of messages a second), so it is
never on the ingest path. It reports what the tolerant tokenizer forgives: segments
out of place or missing, wrong data types, values outside HL7 tables, fields too
long. Each finding names where and what, never the value found there.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from hl7apy.validation import Validator

from hub.errors import HubError

from . import er7

_VALUE_NOT_IN_TABLE = re.compile(r"Value .* not in table (\S+) in element (\S+)$", re.S)
# trigger → abstract message structure, for messages that leave MSH-9.3 empty (v2.3 feeds mostly)
STRUCTURES = {"ADT": {"A01": "ADT_A01", "A04": "ADT_A01", "A08": "ADT_A01", "A13": "ADT_A01", "A02": "ADT_A02",
                      "A03": "ADT_A03", "A05": "ADT_A05", "A14": "ADT_A05", "A28": "ADT_A05", "A31": "ADT_A05",
                      "A11": "ADT_A09", "A40": "ADT_A39", "A41": "ADT_A39", "A34": "ADT_A30", "A47": "ADT_A30",
                      "A39": "ADT_A39"},
              "DFT": {"P03": "DFT_P03", "P11": "DFT_P11"}}
_SUPPORTED = ("2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2")


def structural_findings(raw: bytes) -> list[str]:
    """hl7apy's findings for one message, as lines without patient values."""
    try:
        message = er7.parse_bytes(raw)
    except HubError as exc:
        return [f"{exc.location or 'MSH'}: {exc.message}"]
    findings = quirks(raw, message)
    version = message.version
    if version not in _SUPPORTED:
        findings.append(f"MSH-12: version {version or '(empty)'} is not an HL7 v2 version hl7apy knows; "
                        "checked as 2.5.1")
        version = "2.5.1"
    code, event, structure = message.message_type
    inserted = not structure
    if inserted:
        structure = "SIU_S12" if code == "SIU" else STRUCTURES.get(code, {}).get(event, f"{code}_{event}")
        findings.append(f"MSH-9.3: message structure is empty (checked as {structure})")
    text = _as_standard_er7(message, version, structure)
    try:
        parsed = parse_message(text, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=True)
    except Exception as exc:  # hl7apy refuses structures it cannot place: that is itself the finding
        findings.append(f"message structure: hl7apy cannot read it ({type(exc).__name__})")
        return findings
    handle, report = tempfile.mkstemp(suffix=".txt")
    os.close(handle)
    try:
        # the report file holds every error; the exception raised carries only the first
        with contextlib.suppress(Exception):
            Validator.validate(parsed, report_file=report)
        with open(report, encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    finally:
        os.unlink(report)
    for line in lines:
        if inserted and "MSH_9 (MESSAGE_TYPE)" in line:
            continue  # the structure component added above, unknown to MSH-9 before v2.3.1
        findings.append(_without_values(line))
    return sorted(set(findings), key=findings.index)


def quirks(raw: bytes, message: er7.Message) -> list[str]:
    """What the tolerant tokenizer forgave in this message: worth knowing when onboarding a feed."""
    found = []
    if raw.startswith(b"\xef\xbb\xbf"):
        found.append("message: starts with a UTF-8 byte-order mark (ignored)")
    if b"\n" in raw:
        found.append("segment separator: line feeds instead of carriage returns (accepted)")
    header = raw.split(b"\r", 1)[0].split(b"\n", 1)[0].decode("latin-1")
    if header[3:8] != "|^~\\&":
        found.append(f"MSH-1/MSH-2: non-standard encoding characters {header[3:8]!r} (read as given)")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        charset = message.get(message.msh, 18) or "(MSH-18 empty)"
        found.append(f"character set: not UTF-8; read as {charset}")
    for seg in message.segments:
        if seg[0].startswith("Z"):
            found.append(f"{seg[0]}: local Z-segment (not read)")
    return sorted(set(found), key=found.index)


def _as_standard_er7(message: er7.Message, version: str, structure: str) -> str:
    """The message in standard separators joined by CR, its version one hl7apy knows (hl7apy reads
    custom encoding characters poorly; a stray standard character in the data only blurs a finding)."""
    sep = message.sep
    table = str.maketrans({sep.component: "^", sep.repetition: "~", sep.escape: "\\", sep.subcomponent: "&"})
    lines = []
    for seg in message.segments:
        fields = list(seg)
        if seg[0] == "MSH":
            while len(fields) <= 12:
                fields.append("")
            fields[12] = version
            fields[9] = "^".join([*message.message_type[:2], structure])
            fields = ["MSH", "^~\\&", *(f.translate(table) for f in fields[3:])]
        else:
            fields = [f.translate(table) for f in fields]
        lines.append("|".join(fields))
    return "\r".join(lines)


def _without_values(line: str) -> str:
    match = _VALUE_NOT_IN_TABLE.search(line)
    if match:
        kind = "warning" if line.startswith("Warning") else "error"
        return f"{match.group(2)}: value not in HL7 table {match.group(1)} ({kind})"
    return line
