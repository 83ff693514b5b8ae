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

from hub.errors import HubError

from . import er7

_VALUE_NOT_IN_TABLE = re.compile(r"Value .* not in table (\S+) in element (\S+)$", re.S)
_SUPPORTED = ("2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2")


def structural_findings(raw: bytes) -> list[str]:
    """hl7apy's findings for one message, as lines without patient values."""
    try:
        message = er7.parse_bytes(raw)
    except HubError as exc:
        return [f"{exc.location or 'MSH'}: {exc.message}"]
    findings: list[str] = []
    version = message.version
    if version not in _SUPPORTED:
        findings.append(f"MSH-12: version {version or '(empty)'} is not an HL7 v2 version hl7apy knows; "
                        "checked as 2.5.1")
        version = "2.5.1"
    text = _as_standard_er7(message, version)
    try:
        from hl7apy.consts import VALIDATION_LEVEL
        from hl7apy.parser import parse_message
        from hl7apy.validation import Validator

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
        findings.append(_without_values(line))
    return sorted(set(findings), key=findings.index)


def _as_standard_er7(message: er7.Message, version: str) -> str:
    """The message re-joined with CR and standard separators' positions, version set to one hl7apy knows."""
    sep = message.sep
    lines = []
    for seg in message.segments:
        if seg[0] == "MSH":
            fields = list(seg)
            while len(fields) <= 12:
                fields.append("")
            fields[12] = version
            lines.append(sep.field.join([fields[0]] + fields[2:]))
        else:
            lines.append(sep.field.join(seg))
    return "\r".join(lines)


def _without_values(line: str) -> str:
    match = _VALUE_NOT_IN_TABLE.search(line)
    if match:
        kind = "warning" if line.startswith("Warning") else "error"
        return f"{match.group(2)}: value not in HL7 table {match.group(1)} ({kind})"
    return line
