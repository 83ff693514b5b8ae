"""The MSO's own vocabularies (``mappings/mso/*.yaml``): the codes every practice maps to.

Each file holds one or more vocabularies, a YAML mapping of code → attributes::

    service_lines:
      medical_dermatology: {name: Medical dermatology}

Known vocabularies: service_lines, visit_categories, payers (each with its
financial_class), cancel_categories, locations and providers (the rosters; a
provider is keyed by NPI), and procedure_service_lines: procedure code (CPT/HCPCS)
→ the service line a charge with no encounter or appointment to say so is
attributed to (``hub.reports.attribution``). ``HUB_MSO_VOCABULARIES`` names
another folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from hub.errors import MappingError
from hub.model.kinds import FINANCIAL_CLASS
from hub.settings import current

VOCABULARIES = ("service_lines", "visit_categories", "payers", "cancel_categories", "locations", "providers",
                "procedure_service_lines")
SERVICE_LINE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PROCEDURE_CODE = re.compile(r"^[A-Z0-9]{4,7}$")  # CPT (5 digits, or 4 and a letter) and HCPCS (a letter, 4 digits)
DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "mappings" / "mso"


@dataclass(frozen=True)
class Vocabulary:
    """Every MSO vocabulary by name: code → attributes."""

    entries: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    folder: str | None = None

    def codes(self, name: str) -> frozenset[str]:
        return frozenset(self.entries.get(name, {}))

    def has(self, name: str) -> bool:
        return bool(self.entries.get(name))

    def attributes(self, name: str, code: str) -> dict[str, Any]:
        return dict(self.entries.get(name, {}).get(code) or {})


def vocabulary_folder() -> Path:
    return Path(current().mso_vocabularies or DEFAULT_FOLDER)


def load_vocabulary(folder: Path | None = None) -> Vocabulary:
    """Read every ``*.yaml`` of the folder; an absent folder gives an empty vocabulary."""
    folder = folder or vocabulary_folder()
    return _load(str(folder))


@cache
def _load(folder: str) -> Vocabulary:
    path = Path(folder)
    entries: dict[str, dict[str, dict[str, Any]]] = {}
    if not path.is_dir():
        return Vocabulary({}, None)
    for file in sorted(path.glob("*.yaml")):
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, ValueError) as exc:  # ValueError: a value written as a date that is none
            raise MappingError(f"not valid YAML: {exc}", source=str(file)) from None
        if not isinstance(data, dict):
            raise MappingError("an MSO vocabulary file is a mapping of vocabulary → codes", source=str(file))
        for name, codes in data.items():
            if name not in VOCABULARIES:
                raise MappingError(f"unknown vocabulary {name!r} (known: {', '.join(VOCABULARIES)})",
                                   source=str(file), location=str(name))
            if not isinstance(codes, dict):
                raise MappingError("a vocabulary is a mapping of code → attributes", source=str(file),
                                   location=str(name))
            table = entries.setdefault(name, {})
            for code, attrs in codes.items():
                table[str(code)] = dict(attrs or {})
    for code, attrs in entries.get("payers", {}).items():
        if attrs.get("financial_class") not in FINANCIAL_CLASS:
            raise MappingError(f"payer {code!r} needs a financial_class among {', '.join(FINANCIAL_CLASS)}",
                               source=str(path / "payers.yaml"), location=f"payers.{code}.financial_class")
    if "unattributed" in entries.get("service_lines", {}):  # the reports' name for records with no line
        raise MappingError("'unattributed' is what reports call records without a service line: name the service "
                           "line otherwise", source=str(path / "service_lines.yaml"), location="service_lines")
    _check_procedure_map(entries, path)
    return Vocabulary(entries, str(path))


def _check_procedure_map(entries: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    """Each procedure code names a known service line, and is a code (it is written into report SQL)."""
    lines = set(entries.get("service_lines", {}))
    for code, attrs in entries.get("procedure_service_lines", {}).items():
        where = f"procedure_service_lines.{code}"
        if not PROCEDURE_CODE.match(code):
            raise MappingError(f"procedure code {code!r} is not a CPT or HCPCS code (4 to 7 capital letters and "
                               "digits)", source=str(path), location=where)
        line = attrs.get("service_line")
        if not line or not SERVICE_LINE.match(str(line)) or (lines and line not in lines):
            raise MappingError(f"procedure code {code!r} needs a service_line among {', '.join(sorted(lines))}",
                               source=str(path), location=f"{where}.service_line")


def procedure_service_lines(vocabulary: Vocabulary) -> dict[str, str]:
    """Procedure code → MSO service line (the ``procedure_service_lines`` vocabulary)."""
    return {code: str(attrs["service_line"]) for code, attrs in vocabulary.entries.get("procedure_service_lines",
                                                                                       {}).items()}


def clear_cache() -> None:
    _load.cache_clear()
