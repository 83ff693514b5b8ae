"""Practice mappings: practice codes → MSO codes, declared in YAML.

A mapping file (``mappings/<practice>.yaml``) is data, not code::

    version: 1
    practice: derm-east
    connectors:
      hl7v2: {}                 # the connector's own settings
    code_maps:
      visit_type:               # appointment/encounter/charge visit_type →
        NP: {service_line: medical_dermatology, visit_category: new}
      location:                 # location_source_id → mso_location
        MAIN: {mso_location: east-main}
      payer:                    # payer_name → payer and financial_class
        AETNA PPO: {payer: aetna, financial_class: commercial}
      cancel_reason:            # cancel_reason → cancel_category
        PT: {cancel_category: patient}

An unmapped code never drops a record: the source code stays and the mapped
fields stay empty, for the unmapped-codes report to find.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from hub.errors import MappingError

# code map name → (record field holding the source code, kinds it applies to)
CODE_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "visit_type": ("visit_type", ("appointment", "encounter", "charge")),
    "location": ("location_source_id", ("appointment", "encounter", "charge", "location")),
    "payer": ("payer_name", ("coverage", "charge", "remittance")),
    "cancel_reason": ("cancel_reason", ("appointment",)),
}


@dataclass
class Mapping:
    practice: str | None = None
    version: int = 1
    connectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    code_maps: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    def connector_config(self, connector: str) -> dict[str, Any]:
        return dict(self.connectors.get(connector) or {})

    def apply(self, record: dict[str, Any]) -> dict[str, Any]:
        for map_name, (source_field, kinds) in CODE_FIELDS.items():
            if record.get("kind") not in kinds:
                continue
            code = record.get(source_field)
            table = self.code_maps.get(map_name)
            if code is None or not table:
                continue
            target = table.get(str(code))
            if target:
                record = {**record, **{k: v for k, v in target.items() if not record.get(k)}}
        return record


EMPTY = Mapping()


def load_mapping(text: str | None, *, source: str = "mapping") -> Mapping:
    if not text:
        return EMPTY
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        raise MappingError(f"not valid YAML: {getattr(exc, 'problem', exc)}", source=source,
                           location=where) from None
    if not isinstance(data, dict):
        raise MappingError("a mapping file is a YAML mapping (key: value) at the top", source=source)
    code_maps = data.get("code_maps") or {}
    if not isinstance(code_maps, dict):
        raise MappingError("code_maps must be a mapping of map name → {code: target}", source=source,
                           location="code_maps")
    for name, table in code_maps.items():
        if name not in CODE_FIELDS:
            raise MappingError(f"unknown code map {name!r} (known: {', '.join(CODE_FIELDS)})", source=source,
                               location=f"code_maps.{name}")
        if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
            raise MappingError("each code maps to a mapping of target fields", source=source,
                               location=f"code_maps.{name}")
    return Mapping(practice=data.get("practice"), version=int(data.get("version", 1)),
                   connectors=data.get("connectors") or {},
                   code_maps={k: {str(c): t for c, t in v.items()} for k, v in code_maps.items()}, raw=data)
