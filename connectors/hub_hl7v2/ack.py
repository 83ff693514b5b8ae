"""Acknowledgements (ACK) for HL7 v2 messages, built even when the message is unreadable.

Which code is sent:

- original mode (MSH-15 and MSH-16 empty): AA (stored; or a duplicate, stored
  once already), AE (stored but the application could not use it), AR (refused:
  unreadable, unknown practice, store failure);
- enhanced mode (MSH-15 or MSH-16 valued): when MSH-15 asks for an accept
  acknowledgement for this outcome (AL; ER on an error; SU on success) the answer
  is the commit code CA / CE / CR; otherwise the application code AA / AE / AR.
  Every message is answered even when both fields say NE: an MLLP sender waits
  for its answer on the connection, and silence reads as a lost message there.

MSA-2 echoes MSH-10 (empty for garbage). The ACK's MSH swaps sender and receiver,
keeps MSH-11 and MSH-12, and uses the message's own separators. An ERR segment
says what is wrong: ERR-2 the location (segment^sequence^field), ERR-3 the HL7
error code (table 0357), ERR-4 the severity, ERR-8 the text (no patient values).
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import re

from hub.connector import Envelope, Outcome

from .er7 import DEFAULT_SEPARATORS, Separators, decode_bytes, escape, read_separators

_counter = itertools.count(1)
_PREFIX = f"{os.getpid() % 100000:05d}"
_LOCATION = re.compile(r"([A-Z][A-Z0-9]{2})(?: #?(\d+))?(?:-(\d+))?")


def ack_code(envelope: Envelope, outcome: Outcome) -> str:
    meta = envelope.meta or {}
    accept_mode = (meta.get("accept_ack") or "").upper()
    app_mode = (meta.get("application_ack") or "").upper()
    letter = "A" if outcome.accepted else ("R" if outcome.rejected else "E")
    if accept_mode or app_mode:
        ok = letter == "A"
        if accept_mode == "AL" or (accept_mode == "ER" and not ok) or (accept_mode == "SU" and ok):
            return "C" + letter
    return "A" + letter


def build_ack(envelope: Envelope, outcome: Outcome, *, now: dt.datetime | None = None) -> bytes:
    header = envelope.meta if envelope.meta and "separators" in envelope.meta else read_header(envelope.raw)
    chars = header.get("separators") or ""
    sep = Separators(*chars) if len(chars) == 5 else DEFAULT_SEPARATORS
    fs, cs = sep.field, sep.component
    code = ack_code(envelope, outcome)
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%d%H%M%S%z")
    control = f"A{_PREFIX}{next(_counter):08d}"
    trigger = header.get("trigger", "")
    msh = [
        "MSH", sep.encoding_characters, header.get("receiving_app", ""), header.get("receiving_facility", ""),
        header.get("sending_app", ""), header.get("sending_facility", ""), stamp, "",
        cs.join(["ACK", trigger, "ACK"]) if trigger else "ACK", control, header.get("processing_id") or "P",
        header.get("version") or "2.5.1",
    ]
    segments = [fs.join(msh), fs.join(["MSA", code, header.get("control_id", "")])]
    if code[1] != "A":
        text = outcome.error or ("the message was refused" if code[1] == "R" else "the message could not be used")
        hl7_code = "207^Application internal error^HL70357"
        if outcome.rejected:
            hl7_code = "100^Segment sequence error^HL70357" if "MSH" in (outcome.error_location or "") else (
                "102^Data type error^HL70357")
        location = _err_location(outcome.error_location, sep)
        err = ["ERR", "", location, hl7_code.replace("^", cs), "E", "", "", "", escape(text[:400], sep)]
        segments.append(fs.join(err))
    return ("\r".join(segments) + "\r").encode("utf-8")


def _err_location(location: str | None, sep: Separators) -> str:
    """'PID-3', 'FT1 #2-11' or 'message 7, MSH-10' (a batch) → ERR-2 'PID^1^3' (segment^sequence^field)."""
    if not location:
        return ""
    m = _LOCATION.search(location)
    if not m:
        return ""
    segment, sequence, field = m.groups()
    return sep.component.join([segment, sequence or "1", field or ""]).rstrip(sep.component)


def read_header(raw: bytes) -> dict:
    """What an ACK needs from MSH, best effort, never raising (garbage gives empty fields)."""
    try:
        text = decode_bytes(raw[:8192]).lstrip("\ufeff \t\r\n\x0b")
        if not text.startswith("MSH"):
            return {}
        line = re.split(r"\r\n|\n|\r", text, maxsplit=1)[0]
        sep = read_separators(line)
        return header_of(line.split(sep.field), sep)
    except Exception:
        return {}


def header_of(fields: list[str], sep: Separators) -> dict:
    """MSH fields as split on the field separator (fields[1] is MSH-2 here, not MSH-1)."""
    rs, cs = sep.repetition, sep.component
    values = fields[2:18]  # MSH-3 to MSH-18
    if len(values) < 16:  # trailing empty fields are not sent
        values += [""] * (16 - len(values))
    if rs in "".join(values):  # a repetition in the header (rare): the first of each field
        values = [v.split(rs, 1)[0] if rs in v else v for v in values]
    # written out, not a loop or a call per field (every message's envelope is made of these): MSH-3 to MSH-6
    # echoed as sent (HD with its components); MSH-10, 11, 12, 15, 16, 18 the first component
    (app, facility, receiving_app, receiving_facility, _, _, kind, control_id, processing_id, version, _, _,
     accept_ack, application_ack, _, charset) = values
    message_type = kind.split(cs) + [""]
    return {"separators": sep.field + sep.encoding_characters, "sending_app": app.strip(),
            "sending_facility": facility.strip(), "receiving_app": receiving_app.strip(),
            "receiving_facility": receiving_facility.strip(), "message_code": message_type[0].strip(),
            "trigger": message_type[1].strip(),
            "control_id": (control_id.split(cs, 1)[0] if cs in control_id else control_id).strip(),
            "processing_id": (processing_id.split(cs, 1)[0] if cs in processing_id else processing_id).strip(),
            "version": (version.split(cs, 1)[0] if cs in version else version).strip(),
            "accept_ack": (accept_ack.split(cs, 1)[0] if cs in accept_ack else accept_ack).strip(),
            "application_ack": (application_ack.split(cs, 1)[0] if cs in application_ack else application_ack).strip(),
            "charset": (charset.split(cs, 1)[0] if cs in charset else charset).strip()}
