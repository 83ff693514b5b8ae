"""Structured JSON logs. Log records name messages by id, never by content (no PHI)."""

from __future__ import annotations

import json
import logging
import sys
import time

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
    """JSON logs on stderr at ``level``, else HUB_LOG_LEVEL, else INFO."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("hub")
    root.handlers[:] = [handler]
    root.setLevel((level or current().log_level or "INFO").upper())
    root.propagate = False
