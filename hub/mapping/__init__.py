"""Practice mappings: practice codes → MSO codes, declared in YAML (``mappings/<practice>.yaml``).

A mapping file is data, not code, and is versioned (``version``, raised on every
change)::

    version: 3
    practice: derm-east
    timezone: America/Chicago
    connectors:                  # each connector's own settings (Context.config)
      hl7v2: {overrides: {patient_id: PID.2.1}}
      csv: {exports: [...]}
    code_maps:
      visit_type:                # visit_type → service_line and visit_category
        NP: {service_line: medical_dermatology, visit_category: new}
      location:                  # location_source_id → mso_location
        MAIN: chi-main
      provider:                  # provider_source_id → provider_npi (npi on provider records)
        "1001": "1234567893"
      payer:                     # payer_name (exact), else payer_id → payer and financial_class
        AETNA PPO: {payer: aetna, financial_class: commercial}
        "60054": {payer: aetna}  # a payer id (835 REF*2U / N1-04, 837 NM1*PR NM1-09)
      cancel_reason:             # cancel_reason → cancel_category
        PT: patient
    payer_patterns:              # payer names matched by pattern when no exact entry fits
      - {match: "BLUE CROSS*", payer: bcbs}
    defaults:                    # values a practice never sends, by kind
      appointment: {location_source_id: MAIN}
    go_live: {min_completeness: 0.9, min_mapped_share: 0.95}

Codes match exactly first, then ignoring case and surrounding spaces. An unmapped
code never drops a record: the source code stays and the mapped fields stay empty,
for ``hub mapping unmapped`` and the onboarding scorecard to find. The schema
(``hub.mapping.schema``) is checked whenever a mapping is loaded; each connector section by
that connector's ``config_schema``.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from hub.errors import MappingError
from hub.mapping.schema import SHORTHAND, check_text
from hub.mapping.vocabulary import Vocabulary, load_vocabulary, vocabulary_folder
from hub.model.kinds import KINDS
from hub.settings import current

# code map → kind → (field holding the source code, {target key in the map: record field})
CODE_FIELDS: dict[str, dict[str, tuple[str, dict[str, str]]]] = {
    "visit_type": {kind: ("visit_type", {"service_line": "service_line", "visit_category": "visit_category"})
                   for kind in ("appointment", "encounter", "charge")},
    "location": {**{kind: ("location_source_id", {"mso_location": "mso_location"})
                    for kind in ("appointment", "encounter", "charge", "slot")},
                 "location": ("source_id", {"mso_location": "mso_location"})},
    "provider": {**{kind: ("provider_source_id", {"npi": "provider_npi"})
                    for kind in ("appointment", "encounter", "charge", "slot")},
                 "provider": ("source_id", {"npi": "npi"})},
    "payer": {kind: ("payer_name", {"payer": "payer", "financial_class": "financial_class"})
              for kind in ("coverage", "charge", "remittance")},
    "cancel_reason": {"appointment": ("cancel_reason", {"cancel_category": "cancel_category"})},
}

# the payer map also matches a record's payer id when its payer name is not a key (``Mapping.lookup``)
PAYER_ID_FIELD = "payer_id"

DEFAULT_GO_LIVE: dict[str, Any] = {
    "min_messages": 1,
    "max_refused_share": 0.02,
    "min_completeness": 0.90,
    "min_mapped_share": 0.95,
    "max_duplicate_share": 0.05,
    "max_unrostered": 0,
}
# fields whose completeness the scorecard checks when the mapping names none for a kind
DEFAULT_REQUIRED_FIELDS: dict[str, list[str]] = {
    "appointment": ["source_id", "patient_source_id", "provider_source_id", "location_source_id", "start",
                    "status", "visit_type"],
    "encounter": ["source_id", "patient_source_id", "provider_source_id", "start"],
    "charge": ["source_id", "patient_source_id", "provider_source_id", "service_date", "procedure_code",
               "amount"],
    "remittance": ["source_id", "payer_name", "paid_amount", "paid_on"],
    "patient": ["source_id", "birth_date", "sex"],
    "coverage": ["source_id", "patient_source_id", "payer_name"],
    "provider": ["source_id", "npi"],
}


def _key(code: Any) -> str:
    return " ".join(str(code).split()).casefold()


@cache
def _fields_of(kind: str) -> frozenset[str]:
    return frozenset(f.name for f in KINDS.get(kind, ()))


@cache
def _code_plan(kind: str) -> tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...]:
    """Per kind: (code map, source field, (target key, record field) the kind has), worked out once."""
    fields = _fields_of(kind)
    return tuple((map_name, kinds[kind][0], tuple((k, f) for k, f in kinds[kind][1].items() if f in fields))
                 for map_name, kinds in CODE_FIELDS.items() if kind in kinds)


@dataclass
class Mapping:
    practice: str | None = None
    version: int = 1
    connectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    code_maps: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    payer_patterns: list[dict[str, Any]] = field(default_factory=list)
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    go_live: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_GO_LIVE))
    required_fields: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_REQUIRED_FIELDS))
    timezone: str | None = None
    strict: bool = False  # ``acceptance: strict``: an invalid element refuses the whole message
    raw: dict[str, Any] = field(default_factory=dict)
    vocabulary: Vocabulary = field(default_factory=Vocabulary)
    _folded: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._folded = {name: {_key(code): target for code, target in table.items()}
                        for name, table in self.code_maps.items()}

    def connector_config(self, connector: str) -> dict[str, Any]:
        # the top-level ``timezone`` is the practice's zone (``practice_zone``), applied by the core; a
        # ``timezone`` in a connector's own section is that feed's override, for a feed sent from elsewhere
        return dict(self.connectors.get(connector) or {})

    def practice_zone(self, registered: str | None) -> str | None:
        """The zone times without an offset are read in: the practice's registered zone, else the
        mapping's top-level ``timezone`` (a practice not yet registered, or registered without one)."""
        return registered or self.timezone

    def lookup(self, map_name: str, code: Any, *, payer_id: Any = None) -> dict[str, Any] | None:
        """The MSO target of a practice code, or None when the code is not mapped. For the payer map,
        ``payer_id`` (the record's ``payer_id``: 835 REF*2U / N1*PR N1-04, 837 NM1*PR NM1-09) is tried as a
        key when the payer name is not one (exactly or ignoring case), before the name patterns."""
        if (code is None or code == "") and (map_name != "payer" or payer_id in (None, "")):
            return None
        table = self.code_maps.get(map_name)
        if not table and not (map_name == "payer" and self.payer_patterns):
            return None  # nothing mapped for this code list: the common case before onboarding
        table = table or {}
        folded = self._folded.get(map_name, {})
        target = (table.get(str(code)) or folded.get(_key(code))) if code not in (None, "") else None
        if target is None and map_name == "payer" and payer_id not in (None, ""):
            target = table.get(str(payer_id)) or folded.get(_key(payer_id))
        if target is None and map_name == "payer" and code not in (None, ""):
            name = _key(code)
            for pattern in self.payer_patterns:
                if fnmatch.fnmatchcase(name, _key(pattern["match"])):
                    target = {k: v for k, v in pattern.items() if k != "match"}
                    break
        if target is not None and map_name == "payer" and "financial_class" not in target:
            financial_class = self.vocabulary.attributes("payers", str(target.get("payer"))).get("financial_class")
            if financial_class:
                target = {**target, "financial_class": financial_class}
        return target

    def code_slots(self, record: dict[str, Any]) -> list[tuple[str, str, str]]:
        """(code map, source field, first target field) for each code the record's kind carries."""
        kind = record.get("kind", "")
        out = []
        for map_name, kinds in CODE_FIELDS.items():
            if kind in kinds:
                source_field, targets = kinds[kind]
                present = [t for t in targets.values() if t in _fields_of(kind)]
                if present:
                    out.append((map_name, source_field, present[0]))
        return out

    def apply(self, record: dict[str, Any]) -> dict[str, Any]:
        kind = record.get("kind", "")
        defaults = self.defaults.get(kind)
        if defaults:
            record = {**record, **{k: v for k, v in defaults.items() if record.get(k) in (None, "")}}
        updates: dict[str, Any] = {}
        for map_name, source_field, targets in _code_plan(kind):
            target = (self.lookup(map_name, record.get(source_field), payer_id=record.get(PAYER_ID_FIELD))
                      if map_name == "payer" else self.lookup(map_name, record.get(source_field)))
            if not target:
                continue
            for key, record_field in targets:
                if key in target and record.get(record_field) in (None, ""):
                    updates[record_field] = target[key]
        return {**record, **updates} if updates else record


EMPTY = Mapping()


def load_mapping(text: str | None, *, source: str = "mapping", vocabulary: Vocabulary | None = None) -> Mapping:
    """Parse and check a mapping file; a ``MappingError`` names the line and key of the first problem."""
    if not text:
        return EMPTY
    if vocabulary is None:  # the usual case: processing loads the same stored mapping batch after batch
        settings = current()  # the connectors that check their sections depend on the plugin selection
        selection = (settings.plugins, settings.plugins_allow, settings.plugins_block)
        return _load_cached(text, source, str(vocabulary_folder()), selection)
    return _load(text, source, vocabulary)


def clear_caches() -> None:
    """Forget the mappings checked so far in this process (the MSO vocabularies they were checked against
    changed: a roster entry added)."""
    _load_cached.cache_clear()


@lru_cache(maxsize=64)
def _load_cached(text: str, source: str, folder: str, selection: tuple[tuple[str, ...], ...]) -> Mapping:
    return _load(text, source, load_vocabulary(Path(folder)))


def _load(text: str, source: str, vocabulary: Vocabulary) -> Mapping:
    data, problems = check_text(text, vocabulary)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s): hub mapping validate)" if len(problems) > 1 else ""
        first = problems[0]
        where = ", ".join(p for p in (f"line {first.line}" if first.line else "", first.key) if p)
        raise MappingError(first.message + more, source=source, location=where or None)
    code_maps: dict[str, dict[str, dict[str, Any]]] = {}
    for name, table in (data.get("code_maps") or {}).items():
        code_maps[name] = {str(code): (dict(target) if isinstance(target, dict) else {SHORTHAND[name]: str(target)})
                           for code, target in (table or {}).items()}
        for target in code_maps[name].values():
            for key, value in list(target.items()):
                target[key] = str(value)
    go_live = {**DEFAULT_GO_LIVE, **{k: v for k, v in (data.get("go_live") or {}).items() if k != "required_fields"}}
    required = {**DEFAULT_REQUIRED_FIELDS, **((data.get("go_live") or {}).get("required_fields") or {})}
    # ``version:`` left empty reads as no version, as the schema check does
    return Mapping(practice=data.get("practice"), version=int(data.get("version") or 1),
                   connectors={k: dict(v or {}) for k, v in (data.get("connectors") or {}).items()},
                   code_maps=code_maps, payer_patterns=list(data.get("payer_patterns") or []),
                   defaults={k: dict(v) for k, v in (data.get("defaults") or {}).items()},
                   go_live=go_live, required_fields=required, timezone=data.get("timezone"),
                   strict=data.get("acceptance") == "strict", raw=data,
                   vocabulary=vocabulary)
