"""The MSO rosters: the providers (by NPI) and locations every practice's codes map to.

They are two of the MSO vocabularies (``hub.mapping.vocabulary``): ``providers.yaml`` and
``locations.yaml`` in the vocabulary folder (``mappings/mso``, or ``HUB_MSO_VOCABULARIES``).
``add_provider`` and ``add_location`` add one entry to that file as one line at its end, so
the file stays as written (comments, order); the file is written whole to a temporary file
beside it and renamed, and read back before it replaces the old one.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

import hub.mapping
from hub.errors import ConfigError, MappingError
from hub.mapping import vocabulary as vocabularies
from hub.mapping.schema import npi_is_valid
from hub.mapping.vocabulary import Vocabulary, load_vocabulary, vocabulary_folder

LOCATION_CODE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
HEADERS = {"providers": "# MSO provider roster, keyed by NPI.\n",
           "locations": "# MSO location roster: every practice location code maps to one of these.\n"}


def roster(folder: Path | None = None) -> Vocabulary:
    """The vocabularies of the folder (the rosters among them), read afresh."""
    _forget()
    return load_vocabulary(folder)


def _forget() -> None:
    """Drop the vocabularies read so far, and the mappings checked against them (in this process)."""
    vocabularies.clear_cache()
    hub.mapping.clear_caches()


def add_provider(npi: str, name: str, *, specialty: str | None = None, folder: Path | None = None) -> Path:
    """Add a provider to the roster; the file written. ``name``: "Family, Given" (or one text)."""
    npi = npi.strip()
    if not npi_is_valid(npi):
        raise ConfigError(f"{npi!r} is not an NPI (ten digits with a valid check digit)")
    family, _, given = (part.strip() for part in name.partition(","))
    if not family:
        raise ConfigError("--name must not be empty: the provider's name as 'Family, Given'")
    attrs: dict[str, Any] = {"family_name": family}
    if given:
        attrs["given_name"] = given
    if specialty and specialty.strip():
        attrs["specialty"] = specialty.strip()
    return _add("providers", npi, attrs, folder)


def add_location(code: str, name: str, *, city: str | None = None, state: str | None = None,
                 folder: Path | None = None) -> Path:
    """Add a location to the roster; the file written."""
    code = code.strip()
    if not LOCATION_CODE.match(code):
        raise ConfigError(f"{code!r} is not a location code: lower-case letters, digits, - and _ "
                          "(such as chi-lincoln-park)")
    if not name.strip():
        raise ConfigError("--name must not be empty: the location's name")
    attrs: dict[str, Any] = {"name": name.strip()}
    if city and city.strip():
        attrs["city"] = city.strip()
    if state and state.strip():
        attrs["state"] = state.strip()
    return _add("locations", code, attrs, folder)


def _add(vocabulary: str, code: str, attrs: dict[str, Any], folder: Path | None) -> Path:
    folder = folder or vocabulary_folder()
    known = roster(folder)  # every file of the folder: the code may sit in another one
    if code in known.codes(vocabulary):
        raise ConfigError(f"{code} is on the {vocabulary} roster already (in {folder}); edit the file to change it")
    path = folder / f"{vocabulary}.yaml"
    text = path.read_text(encoding="utf-8") if path.exists() else HEADERS[vocabulary] + f"{vocabulary}:\n"
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise MappingError(f"not valid YAML: {exc}", source=str(path)) from None
    if not isinstance(data, dict) or set(data) - {vocabulary}:
        raise MappingError(f"the file holds other vocabularies than {vocabulary}: add {code} to it by hand",
                           source=str(path))
    # an NPI is quoted (text, never a number); codes hold no quote or colon (checked above)
    key = f'"{code}"' if vocabulary == "providers" else code
    entry = f"{key}: " + yaml.safe_dump(attrs, default_flow_style=True, sort_keys=False, allow_unicode=True,
                                           width=1000).strip()
    new = text + ("" if text.endswith("\n") else "\n") + f"  {entry}\n"
    read_back = yaml.safe_load(new) or {}
    if (read_back.get(vocabulary) or {}).get(code) != attrs:  # the line did not land in the roster's mapping
        raise MappingError(f"{code} could not be added at the end of the file: add it by hand", source=str(path))
    folder.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{vocabulary}.", suffix=".yaml", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as fh:
            fh.write(new)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _forget()  # what this process reads next is the roster as it is now
    return path
