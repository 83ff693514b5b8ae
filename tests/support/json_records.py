"""A test feed: a JSON list of common-model records per payload, and a plugin that registers it."""

import json
import sys
import types
from typing import Any

from hub import hookimpl
from hub.connector import Connector, Context, Envelope
from hub.errors import ParseError


class JsonRecords(Connector):
    """Test feed: a JSON list of common-model records, one message per payload."""

    name = "json-records"
    version = "1.0.0"
    media_types = ("application/x-test-records",)

    @classmethod
    def detect(cls, data: bytes) -> bool:
        return data.lstrip().startswith(b"[")

    def parse(self, envelope: Envelope, context: Context) -> list[dict[str, Any]]:
        try:
            return list(json.loads(envelope.raw))
        except ValueError:
            raise ParseError("not a JSON list of records") from None

    def to_canonical(self, parsed: list[dict[str, Any]], context: Context) -> Any:
        yield from parsed


plugin = types.ModuleType("json_records_plugin")
plugin.hub_register_connectors = hookimpl(lambda registry: registry.add(JsonRecords))  # type: ignore[attr-defined]
sys.modules[plugin.__name__] = plugin
