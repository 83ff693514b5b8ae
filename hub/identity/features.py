"""What the matcher compares of a patient record: its fields normalised, one flat row per record.

The normalisation is SQL run by DuckDB over every record at once (``FEATURES_SQL``): names lose
accents, case and punctuation; a given name carries its nickname group (Bob, Robert and Bobby share
one), from the ``nicknames`` dataset; a family name its parts (Garcia-Lopez: garcia, lopez), so a
hyphenated name agrees with either half. Phones keep their last ten digits, postal codes their first
five, street lines their words with the usual abbreviations. A value that names nobody (a phone of
one repeated digit, 555-1212) is dropped rather than compared.

The identifiers that name one person across practices (SSN, MBI, shared systems, a sent
enterprise id) are read here too, in SQL as well (``rule_pairs_sql``), for the deterministic rules.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

SSN_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/us-ssn", "urn:oid:2.16.840.1.113883.4.1"})
MBI_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/us-mbi", "urn:oid:2.16.840.1.113883.4.927"})
RAW_COLUMNS = ("given_name", "family_name", "birth_date", "sex", "postal_code", "phone", "address_line", "email")
RULE_COLUMNS = ("identifiers", "enterprise_id")  # JSON text, and an enterprise id a feed or plugin sent
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


def _quoted(values: Iterable[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in sorted(values)) or "NULL"


def rule_pairs_sql(shared: Iterable[str], new_from: int, bucket_max: int) -> str:
    """raw (unique_id, birth_date, identifiers as JSON text, enterprise_id) → (rule, head, other): the
    records that share an SSN, MBI, shared-system identifier or sent enterprise id, each joined to the
    first of its key (a star, not every pair), for keys with a record from ``new_from`` on. A key
    more than ``bucket_max`` records share is a placeholder, not a person. An SSN or MBI keyed in
    wrong is common: records whose birth dates disagree beyond a swap or one character are left to
    the model. A value the SSA never issues (000-, 666-, 9xx-, 123-45-6789) is not an SSN."""
    ssn_rule = (f"system IN ({_quoted(SSN_SYSTEMS)}) OR (kind = 'SS' AND system NOT LIKE 'urn:%' "
                "AND system NOT LIKE 'http%')")
    return f"""
WITH ids AS (
  SELECT unique_id, unnest(CAST(json(identifiers) AS JSON[])) AS ident FROM raw
  WHERE identifiers IS NOT NULL AND json_valid(identifiers) AND json_type(json(identifiers)) = 'ARRAY'
), parts AS (
  SELECT unique_id, coalesce(json_extract_string(ident, '$.system'), '') AS system,
    trim(coalesce(json_extract_string(ident, '$.value'), '')) AS value,
    upper(coalesce(json_extract_string(ident, '$.type'), '')) AS kind
  FROM ids WHERE json_type(ident) = 'OBJECT'
), keyed AS (
  SELECT unique_id,
    CASE WHEN {ssn_rule} THEN 'ssn' WHEN system IN ({_quoted(MBI_SYSTEMS)}) THEN 'mbi'
         WHEN system IN ({_quoted(shared)}) THEN 'shared-id' END AS rule,
    CASE WHEN {ssn_rule} THEN regexp_replace(value, '[^0-9]', '', 'g')
         WHEN system IN ({_quoted(MBI_SYSTEMS)}) THEN upper(regexp_replace(value, '[^A-Za-z0-9]', '', 'g'))
         ELSE system || '|' || value END AS key
  FROM parts WHERE value <> ''
), valid AS (
  SELECT DISTINCT unique_id, rule, key FROM keyed WHERE
    (rule = 'ssn' AND length(key) = 9 AND left(key, 3) NOT IN ('000', '666') AND left(key, 3) < '900'
     AND substr(key, 4, 2) <> '00' AND right(key, 4) <> '0000' AND key NOT IN ('123456789', '078051120'))
    OR (rule = 'mbi' AND length(key) = 11 AND left(key, 1) BETWEEN '1' AND '9')
    OR rule = 'shared-id'
  UNION
  SELECT unique_id, 'enterprise-id', enterprise_id FROM raw WHERE coalesce(enterprise_id, '') <> ''
), buckets AS (
  SELECT rule, list(unique_id ORDER BY unique_id) AS members FROM valid GROUP BY rule, key
  HAVING count(*) BETWEEN 2 AND {int(bucket_max)} AND max(unique_id) >= {int(new_from)}
), star AS (
  SELECT rule, members[1] AS head, unnest(members[2:]) AS other FROM buckets
)
SELECT s.rule, s.head, s.other FROM star s
JOIN raw a ON a.unique_id = s.head JOIN raw b ON b.unique_id = s.other
WHERE s.other >= {int(new_from)} AND (s.rule NOT IN ('ssn', 'mbi') OR a.birth_date IS NULL OR b.birth_date IS NULL
  OR a.birth_date = b.birth_date
  OR (length(a.birth_date) = length(b.birth_date) AND hamming(a.birth_date, b.birth_date) <= 1)
  OR (left(a.birth_date, 4) = left(b.birth_date, 4) AND substr(a.birth_date, 6, 2) = substr(b.birth_date, 9, 2)
      AND substr(a.birth_date, 9, 2) = substr(b.birth_date, 6, 2)))
"""
