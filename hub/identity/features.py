"""What the matcher compares of a patient record: its fields normalised, one flat row per record.

The normalisation is SQL run by DuckDB over every record at once (``FEATURES_SQL``): names lose
accents, case and punctuation; a given name carries its nickname group (Bob, Robert and Bobby share
one), from the ``nicknames`` dataset; a family name its parts (Garcia-Lopez: garcia, lopez), so a
hyphenated name agrees with either half. Phones keep their last ten digits, postal codes their first
five, street lines their words with the usual abbreviations. A value that names nobody (a phone of
one repeated digit, 555-1212) is dropped rather than compared.

The identifiers that name one person across practices (SSN, MBI, shared systems) are read here too
(``identifier_keys``), for the deterministic rules.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

SSN_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/us-ssn", "urn:oid:2.16.840.1.113883.4.1"})
MBI_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/us-mbi", "urn:oid:2.16.840.1.113883.4.927"})
RAW_COLUMNS = ("given_name", "family_name", "birth_date", "sex", "postal_code", "phone", "address_line", "email")
_STREET_WORDS = {"street": "st", "avenue": "ave", "av": "ave", "road": "rd", "drive": "dr", "lane": "ln",
                 "boulevard": "blvd", "court": "ct", "place": "pl", "apartment": "apt", "suite": "ste",
                 "north": "n", "south": "s", "east": "e", "west": "w", "highway": "hwy", "terrace": "ter",
                 "circle": "cir", "parkway": "pkwy", "square": "sq", "unit": "apt", "#": "apt"}
_SUFFIXES = ("jr", "sr", "ii", "iii", "iv")


def _fold(expr: str) -> str:
    """Lower case ASCII letters only (accents dropped): 'Zoë O'Neil' → 'zoeoneil'."""
    return f"regexp_replace(lower(strip_accents({expr})), '[^a-z]', '', 'g')"


def _street_word(word: str) -> str:
    cases = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in _STREET_WORDS.items())
    return f"CASE {word} {cases} ELSE {word} END"


_FIRST_GIVEN = _fold("regexp_split_to_array(trim(coalesce(given_name, '')), '[\\s\\-]+')[1]")
_FAMILY_WORDS = "regexp_split_to_array(coalesce(family_name, ''), '[\\s\\-]+')"

# raw (unique_id and RAW_COLUMNS) → the compared columns (hub.identity.matcher.FIELDS); nicknames(name, grp)
FEATURES_SQL = f"""
WITH n AS (
  SELECT unique_id,
    nullif({_FIRST_GIVEN}, '') AS given,
    list_sort(list_distinct(list_filter(
      list_transform({_FAMILY_WORDS}, lambda w: {_fold("w")}),
      lambda w: w <> '' AND NOT list_contains({list(_SUFFIXES)}, w)))) AS parts,
    CASE WHEN birth_date IS NULL OR birth_date IN ('1900-01-01', '0001-01-01') OR length(birth_date) <> 10
         THEN NULL ELSE birth_date END AS birth_date,
    CASE WHEN sex IN ('male', 'female') THEN sex END AS sex,
    nullif(array_to_string(list_transform(list_filter(regexp_split_to_array(
        regexp_replace(lower(strip_accents(replace(coalesce(address_line, ''), '.', ''))), '[^a-z0-9#]+', ' ', 'g'),
        ' '), lambda w: w <> ''), lambda w: {_street_word("w")}), ' '), '') AS street,
    left(regexp_replace(lower(coalesce(postal_code, '')), '[^a-z0-9]', '', 'g'), 5) AS postal_raw,
    right(regexp_replace(coalesce(phone, ''), '[^0-9]', '', 'g'), 10) AS phone_raw,
    lower(trim(coalesce(email, ''))) AS email_raw
  FROM raw
)
SELECT n.unique_id, n.given,
  CASE WHEN n.given IS NULL THEN NULL ELSE coalesce(k.grp, [n.given]) END AS given_group,
  nullif(array_to_string(n.parts, ''), '') AS family,
  CASE WHEN len(n.parts) = 0 THEN NULL ELSE n.parts END AS family_parts,
  n.birth_date, n.sex, n.street,
  CASE WHEN length(n.postal_raw) >= 3 AND n.postal_raw <> repeat('0', length(n.postal_raw))
       THEN n.postal_raw END AS postal,
  CASE WHEN length(n.phone_raw) < 7 OR n.phone_raw = repeat(left(n.phone_raw, 1), length(n.phone_raw))
         OR right(n.phone_raw, 7) = '5551212' THEN NULL ELSE n.phone_raw END AS phone,
  CASE WHEN strpos(n.email_raw, '@') > 0 AND strpos(regexp_extract(n.email_raw, '@([^@]*)$', 1), '.') > 0
       THEN n.email_raw END AS email
FROM n LEFT JOIN nicknames k ON k.name = n.given
"""


@functools.cache
def nickname_groups() -> tuple[list[str], list[list[str]]]:
    """Every name of the nicknames dataset with its group: the name, its nicknames and the names it
    is a nickname of (lower case, sorted)."""
    from nicknames import NickNamer

    nn = NickNamer()
    names = sorted(set(nn.nickname_lookup) | set(nn.canonical_lookup))
    return names, [sorted({name} | nn.nicknames_of(name) | nn.canonicals_of(name)) for name in names]


def ssn(value: str | None) -> str | None:
    digits = "".join(ch for ch in value or "" if ch.isdigit())
    if len(digits) != 9 or digits[:3] in ("000", "666") or digits[:3] >= "900" or digits[3:5] == "00" \
            or digits[5:] == "0000" or digits in ("123456789", "078051120"):
        return None  # not a number the SSA issues: a placeholder some systems send
    return digits


def mbi(value: str | None) -> str | None:
    text = "".join(ch for ch in value or "" if ch.isalnum()).upper()
    return text if len(text) == 11 and text[0] in "123456789" else None


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


def may_name_a_person(identifiers_text: str | None, shared: frozenset[str]) -> bool:
    """A cheap look at the stored JSON before parsing it: could it hold an SSN, MBI or shared id?"""
    if not identifiers_text:
        return False
    return ("ssn" in identifiers_text or "mbi" in identifiers_text or '"SS"' in identifiers_text
            or "4.1" in identifiers_text or "4.927" in identifiers_text
            or any(system in identifiers_text for system in shared))
