"""Example connector: a practice-management system's pipe-delimited appointment export.

    #HUBPIPE v1
    APPT|<appointment id>|<MRN>|<provider id>|<start ISO 8601>|<minutes>|<visit type>|<status>

It shows the whole contract: declarative attributes, ``detect``, ``parse`` raising
the hub's ``ParseError`` with the line it is about, ``to_canonical`` yielding
common-model records, and the plugin hook that registers the class.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hub import hookimpl
from hub.connector import Connector, Context, Envelope
from hub.errors import ParseError

MAGIC = b"#HUBPIPE"
STATUSES = {"booked", "arrived", "fulfilled", "cancelled", "noshow"}


class PipeAppointments(Connector):
    name = "example-pipe"
    version = "1.0.0"
    media_types = ("text/x-hub-pipe",)
    file_extensions = (".pipe",)
    description = "Pipe-delimited appointment export (worked example)"

    @classmethod
    def detect(cls, data: bytes) -> bool:
        return data.lstrip(b"\xef\xbb\xbf").startswith(MAGIC)

    def parse(self, envelope: Envelope, context: Context) -> list[list[str]]:
        try:
            text = envelope.raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ParseError(f"not UTF-8 text (byte {exc.start})") from None
        lines = text.splitlines()
        if not lines or not lines[0].startswith("#HUBPIPE"):
            raise ParseError("missing the '#HUBPIPE v1' header", location="line 1")
        rows = []
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            fields = line.split("|")
            if fields[0] != "APPT" or len(fields) != 8:
                raise ParseError(f"expected 8 fields starting with APPT, found {len(fields)}",
                                 location=f"line {number}")
            if fields[7] not in STATUSES:
                raise ParseError(f"unknown status (one of {', '.join(sorted(STATUSES))})",
                                 location=f"line {number}, field 8")
            rows.append(fields)
        return rows

    def to_canonical(self, parsed: list[list[str]], context: Context) -> Iterator[dict[str, Any]]:
        for _, appt_id, mrn, provider, start, minutes, visit_type, status in parsed:
            yield {"kind": "patient", "source_id": mrn}
            yield {"kind": "appointment", "source_id": appt_id, "patient_source_id": mrn,
                   "provider_source_id": provider, "start": start, "duration_min": int(minutes),
                   "visit_type": visit_type, "status": status}


@hookimpl
def hub_register_connectors(registry: Any) -> None:
    registry.add(PipeAppointments)
