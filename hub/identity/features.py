"""What the matcher compares of a patient record: its fields normalised, one flat row per record.

Names lose accents, case and punctuation; a given name also carries its nickname group (Bob,
Robert and Bobby share one), from the ``nicknames`` dataset; a family name its parts (Garcia-Lopez:
garcia, lopez), so a hyphenated name agrees with either half. Phones keep their last ten digits,
postal codes their first five, street lines their words with the usual abbreviations. A value that
names nobody (a phone of one repeated digit, an all-zero SSN) is dropped rather than compared.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from nicknames import NickNamer

SSN_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/us-ssn", "urn:oid:2.16.840.1.113883.4.1"})
MBI_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/us-mbi", "urn:oid:2.16.840.1.113883.4.927"})
_STREET_WORDS = {"street": "st", "avenue": "ave", "av": "ave", "road": "rd", "drive": "dr", "lane": "ln",
                 "boulevard": "blvd", "court": "ct", "place": "pl", "apartment": "apt", "suite": "ste",
                 "north": "n", "south": "s", "east": "e", "west": "w", "highway": "hwy", "terrace": "ter",
                 "circle": "cir", "parkway": "pkwy", "square": "sq", "unit": "apt", "#": "apt"}
_NOT_WORD = re.compile(r"[^a-z0-9#]+")


def fold(text: str | None) -> str:
    """Lower case ASCII letters only (accents dropped): 'Zoë O'Neil' → 'zoeoneil'."""
    if not text:
        return ""
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(filter(str.isalpha, text.lower()))


def _words(text: str | None) -> list[str]:
    if not text:
        return []
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return [w for w in re.split(r"[\s\-]+", text.lower()) if w]


@functools.cache
def _namer() -> NickNamer:
    return NickNamer()


@functools.lru_cache(maxsize=1 << 14)
def name_group(given: str) -> tuple[str, ...]:
    """The name and every name it is a nickname or a canonical form of, sorted (lower case)."""
    if not given:
        return ()
    nn = _namer()
    return tuple(sorted({given} | nn.nicknames_of(given) | nn.canonicals_of(given)))


def first_given(given_name: str | None) -> str:
    words = _words(given_name)
    return fold(words[0]) if words else ""


def family_parts(family_name: str | None) -> list[str]:
    return sorted({fold(w) for w in _words(family_name) if fold(w) not in ("", "jr", "sr", "ii", "iii", "iv")})


def phone_digits(phone: str | None) -> str | None:
    digits = "".join(ch for ch in phone or "" if ch.isdigit())[-10:]
    if len(digits) < 7 or len(set(digits)) == 1 or digits[-7:] == "5551212":
        return None
    return digits


def postal5(postal: str | None) -> str | None:
    digits = "".join(ch for ch in postal or "" if ch.isalnum())[:5].lower()
    return digits if len(digits) >= 3 and set(digits) != {"0"} else None


def street(line: str | None) -> str | None:
    if not line:
        return None
    text = line.lower()
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = [_STREET_WORDS.get(w, w) for w in _NOT_WORD.split(text.replace(".", "")) if w]
    return " ".join(words) or None


def email(address: str | None) -> str | None:
    text = (address or "").strip().lower()
    return text if "@" in text and "." in text.rsplit("@", 1)[-1] else None


def ssn(value: str | None) -> str | None:
    digits = "".join(ch for ch in value or "" if ch.isdigit())
    if len(digits) != 9 or digits[:3] in ("000", "666") or digits[:3] >= "900" or digits[3:5] == "00" \
            or digits[5:] == "0000" or digits in ("123456789", "078051120"):
        return None  # not a number the SSA issues: a placeholder some systems send
    return digits


def mbi(value: str | None) -> str | None:
    text = "".join(ch for ch in value or "" if ch.isalnum()).upper()
    return text if len(text) == 11 and text[0] in "123456789" else None


def iso_date(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        value = value.date()
    text = value.isoformat() if isinstance(value, dt.date) else str(value)[:10]
    return text if len(text) == 10 and not text.startswith(("1900-01-01", "0001")) else None


def identifier_keys(identifiers: Iterable[dict[str, Any]] | None, shared: frozenset[str]) -> list[tuple[str, str]]:
    """(rule, key) of the identifiers that name one person across practices: SSN, MBI, and the
    systems the deployment declares shared (an enterprise id, a shared EHR instance's MRNs)."""
    out: list[tuple[str, str]] = []
    for ident in identifiers or ():
        if not isinstance(ident, dict):
            continue
        system, value, kind = ident.get("system") or "", ident.get("value"), (ident.get("type") or "").upper()
        if not value:
            continue
        if system in SSN_SYSTEMS or (kind == "SS" and not system.startswith(("urn:", "http"))):
            if (number := ssn(str(value))) is not None:
                out.append(("ssn", number))
        elif system in MBI_SYSTEMS:
            if (number := mbi(str(value))) is not None:
                out.append(("mbi", number))
        elif system and system in shared:
            out.append(("shared-id", f"{system}|{str(value).strip()}"))
    return out


def features(row: dict[str, Any]) -> dict[str, Any]:
    """The comparison row of one stored patient (a dict of the patients table's columns)."""
    given = first_given(row.get("given_name"))
    parts = family_parts(row.get("family_name"))
    return {
        "given": given or None,
        "given_group": list(name_group(given)) or None,
        "family": "".join(parts) or None,
        "family_parts": parts or None,
        "birth_date": iso_date(row.get("birth_date")),
        "sex": row.get("sex") if row.get("sex") in ("male", "female") else None,
        "street": street(row.get("address_line")),
        "postal": postal5(row.get("postal_code")),
        "phone": phone_digits(row.get("phone")),
        "email": email(row.get("email")),
    }
