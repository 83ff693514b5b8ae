"""Structured JSON logs. Log records name messages by id, never by content (no PHI).

The hub's own lines are written that way; the libraries' lines are not (rq logs a failed job's
traceback with its exception text, a database driver's error quotes the values of the row it
refused, an exception may quote the field it could not read). So every record of every logger
passes ``redact`` when it is made (a log record factory, ``install_redaction``; each entry point
installs it: ``hub ...``, the ``hub serve`` workers, ``hub mllp``, ``hub worker`` and rq's lines):

- HL7 v2 segments (``PID|1||...``) keep only their name: ``PID|…``;
- JSON string values (a FHIR resource, a record) become ``"…"``;
- SQL parameters (``[parameters: ...]``) and a driver's ``DETAIL:`` and ``Key (...)=(...)`` values go;
- in a traceback (``exc_info``, or one quoted in the message as rq does) only the frames and the
  exception's type stay: its message, and whatever a driver appends below it, is withheld.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import traceback
from typing import Any

from hub.settings import current


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
                 "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        for key in ("practice", "message_id", "connector", "key_id", "request_id", "status", "duration_ms",
                    "address", "worker"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__  # the type only: a traceback may quote data
        return json.dumps(entry)


def configure_logging(level: str | None = None) -> None:
    """JSON logs on stderr at ``level``, else HUB_LOG_LEVEL, else INFO; rq's lines likewise (rq then adds
    no handler of its own), all of them redacted."""
    install_redaction()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("hub", "rq"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel((level or current().log_level or "INFO").upper())
        logger.propagate = False


# -- redaction -------------------------------------------------------------------------------------
WITHHELD = "…"
_SEGMENT = re.compile(r"(?<![A-Za-z0-9])([A-Z][A-Z0-9]{2})\|[^\r\n]*")  # an HL7 v2 segment, to the end of its line
_JSON_STRING = re.compile(r'("[^"\\\n]{1,64}"\s*:\s*)"(?:[^"\\\n]|\\.)*"')  # "key": "value"
_SQL_PARAMETERS = re.compile(r"\[parameters: .*?\](?=\s*(?:\n|\(Background|$))", re.S)
_DETAIL = re.compile(r"^(\s*DETAIL:).*$", re.M)
_KEY_VALUES = re.compile(r"(Key \([^)]*\)=)\((?:[^()]|\([^()]*\))*\)")
_JSON_ITEM = re.compile(r'(?<=[\[,])(\s*)"(?:[^"\\\n]|\\.)*"(?=\s*[\],])')  # a string in a JSON array
_PATIENT_PATH = re.compile(r"(/patients/[^/\s?]+/)[^/\s?]+")  # a record's id in a URL (an MRN)
_QUERY_VALUE = re.compile(r"([?&][\w.-]+=)[^&\s\"']+")
_TRACEBACK = "Traceback (most recent call last):"
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::.*)?$")
_EXCEPTION_NAME = ("Error", "Exception", "Warning", "Exit", "Interrupt", "Failure", "Timeout", "Violation",
                   "Iteration")
_CHAIN_LINES = ("During handling of the above exception", "The above exception was the direct cause")


def redact(text: str) -> str:
    """The text without payload-like values (see the module's docstring); cheap when there are none."""
    if _TRACEBACK in text:
        head, _, rest = text.partition(_TRACEBACK)
        return redact(head) + _TRACEBACK + _frames_only(rest)
    if "|" in text:
        text = _SEGMENT.sub(lambda m: f"{m.group(1)}|{WITHHELD}", text)
    if '"' in text:
        text = _JSON_STRING.sub(lambda m: f'{m.group(1)}"{WITHHELD}"', text)
        text = _JSON_ITEM.sub(lambda m: f'{m.group(1)}"{WITHHELD}"', text)
    if "/patients/" in text:
        text = _PATIENT_PATH.sub(lambda m: f"{m.group(1)}{WITHHELD}", text)
    if "?" in text and "=" in text:
        text = _QUERY_VALUE.sub(lambda m: f"{m.group(1)}{WITHHELD}", text)
    if "[parameters:" in text:
        text = _SQL_PARAMETERS.sub(f"[parameters: {WITHHELD}]", text)
    if "DETAIL:" in text:
        text = _DETAIL.sub(lambda m: f"{m.group(1)} {WITHHELD}", text)
    if "Key (" in text:
        text = _KEY_VALUES.sub(lambda m: f"{m.group(1)}({WITHHELD})", text)
    return text


def _frames_only(text: str) -> str:
    """A traceback's frames (file, line, function and source line: the code, not the data) and the type of
    each exception; the exceptions' messages and any line a library appends to them are withheld."""
    kept = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line[:1].isspace() or line.startswith(_CHAIN_LINES) or line == _TRACEBACK:
            kept.append(line)
            continue
        match = _EXCEPTION_LINE.match(line)  # "module.Name: message"; a line of anything else is dropped
        if match and ("." in match.group(1) or match.group(1).endswith(_EXCEPTION_NAME)):
            kept.append(f"{match.group(1)}: (message withheld: it may quote data)")
    return "\n" + "\n".join(kept)


def redacted_traceback(exc_info: Any) -> str:
    return _TRACEBACK + _frames_only("".join(traceback.format_exception(*exc_info)).partition(_TRACEBACK)[2])


_base_factory = logging.getLogRecordFactory()


def _redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    try:
        message = record.getMessage()
    except Exception:  # a library's bad format string: its own text, unformatted
        message = str(record.msg)
    record.msg, record.args = redact(message), None
    if record.exc_info and record.exc_info[0] is not None:
        record.exc_text = redacted_traceback(record.exc_info)  # formatters use it instead of their own
    if record.stack_info:
        record.stack_info = None
    return record


def install_redaction() -> None:
    """Every log record of this process, of any library, redacted as it is made (idempotent; a forked
    child inherits it)."""
    if logging.getLogRecordFactory() is not _redacting_factory:
        logging.setLogRecordFactory(_redacting_factory)
