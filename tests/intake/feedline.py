"""A test-only connector plugin (load it with HUB_PLUGINS=tests.intake.feedline).

    FEEDLINE
    PAT|<MRN>|<family name>|<given name>|<sex code>

Sex codes are translated by the connector's mapping section ``sex_codes`` (F, M
and U built in), so a mapping fix followed by a reprocess turns an error into a
processed message. Answers are one line per message: ``ACK|AA|<message id>``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from hub import hookimpl
from hub.connector import Connector, Context, Envelope, Outcome
from hub.errors import MappingError, ParseError

MEDIA_TYPE = "text/x-hub-feedline"
BUILT_IN = {"F": "female", "M": "male", "U": "unknown"}


class Feedline(Connector):
    name = "test-feedline"
    version = "0.1.0"
    media_types = (MEDIA_TYPE,)

    @classmethod
    def detect(cls, data: bytes) -> bool:
        return data.startswith(b"FEEDLINE")

    def split(self, data: bytes, *, origin: str | None = None) -> list[Envelope]:
        if not data.startswith(b"FEEDLINE\n"):
            raise ParseError("missing the FEEDLINE header", location="line 1")
        # one message per PAT line, so one payload can carry several messages
        return [Envelope(raw=b"FEEDLINE\n" + line, control_id=str(n))
                for n, line in enumerate(data.splitlines()[1:], start=2) if line.strip()]

    def parse(self, envelope: Envelope, context: Context) -> list[str]:
        line = envelope.raw.decode("utf-8", "replace").splitlines()[1]
        fields = line.split("|")
        if fields[0] != "PAT" or len(fields) != 5:
            raise ParseError(f"expected 5 fields starting with PAT, found {len(fields)}", location="line 2")
        return fields

    def to_canonical(self, parsed: list[str], context: Context) -> Iterator[dict[str, Any]]:
        _, mrn, family, given, sex = parsed
        codes = {**BUILT_IN, **dict(context.config.get("sex_codes") or {})}
        if sex not in codes:
            raise MappingError("unmapped sex code: add it under connectors.test-feedline.sex_codes",
                               location="PAT field 5")
        yield {"kind": "patient", "source_id": mrn, "family_name": family, "given_name": given, "sex": codes[sex]}

    def acknowledge(self, envelope: Envelope, outcome: Outcome) -> bytes | None:
        code = "AA" if outcome.accepted else ("AR" if outcome.rejected else "AE")
        return f"ACK|{code}|{outcome.message_id}\n".encode()

    def answer(self, results: Sequence[tuple[Envelope, Outcome]]) -> tuple[bytes, str] | None:
        body = b"".join(self.acknowledge(env, out) or b"" for env, out in results)
        return body, "text/plain"


@hookimpl
def hub_register_connectors(registry: Any) -> None:
    registry.add(Feedline)
