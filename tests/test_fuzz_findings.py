"""What fuzzing (benchmarks/fuzz.py) found, each kept as the hand-written input that failed: every one
must now be a user error with a message (or read fine), never another exception, a hang or a blow-up."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hub_csv import CsvConnector, RowReader
from hub_fhir import FhirConnector
from hub_fhir.mapping import timezone_of
from hub_hl7v2.values import zone
from hub_x12 import X12Connector

from hub.connector import Context, Envelope
from hub.errors import ConfigError, HubError, MappingError, ParseError, ValidationError
from hub.mapping import load_mapping
from hub.mapping.vocabulary import Vocabulary
from hub.pipeline.normalize import practice_zone
from hub.store.practices import check_timezone

ROOT = Path(__file__).resolve().parents[1]
EXPORTS = [{"kind": "appointment", "columns": {"source_id": "Appt ID", "patient_source_id": "MRN"}}]


def load(text: str) -> Any:
    return load_mapping(text, source="m.yaml", vocabulary=Vocabulary())


# -- CSV: bytes that are not the text encoding the file promises ------------------------------------------------
def test_a_csv_with_a_utf8_byte_order_mark_and_a_byte_that_is_not_utf8_is_refused_naming_the_byte() -> None:
    # was UnicodeDecodeError: the mark sends the file to the UTF-8 decoder without a fallback
    data = b"\xef\xbb\xbfAppt ID,MRN\r\nA1,\xaf\r\n"  # 0xAF is the 20th byte: 3 (mark) + 13 + "A1,"
    with pytest.raises(ParseError) as caught:
        CsvConnector().split(data, origin="export.csv")
    assert caught.value.source == "export.csv"
    assert caught.value.location == "byte 20"
    assert "byte-order mark" in caught.value.message


def test_a_csv_row_not_in_the_configured_encoding_is_refused_naming_the_byte() -> None:
    # was UnicodeDecodeError, which the core reported as a connector bug
    context = Context(practice="p1", origin="export.csv", config={"exports": EXPORTS, "encoding": "utf-8"})
    envelope = Envelope(raw=b"Appt ID,MRN\r\nA1,M\xe9\r\n", control_id="line 2")  # 0xE9: the 18th byte
    with pytest.raises(ParseError) as caught:
        CsvConnector().parse(envelope, context)
    assert caught.value.location == "byte 18"
    assert "utf-8" in caught.value.message and "connectors.csv.encoding" in caught.value.message


def test_a_csv_encoding_setting_that_names_no_encoding_is_a_setting_error() -> None:
    # was LookupError
    context = Context(practice="p1", origin="export.csv", config={"exports": EXPORTS, "encoding": "utf-99"})
    with pytest.raises(ConfigError, match="connectors.csv.encoding 'utf-99' is not a text encoding"):
        CsvConnector().parse(Envelope(raw=b"Appt ID,MRN\r\nA1,M1\r\n"), context)


# -- time zones: a folder of the zone database, or a name too long for a file name ----------------------------------
ZONE_READERS: dict[str, tuple[Callable[[str], Any], type[HubError]]] = {
    "practice registration": (check_timezone, ValidationError),
    "processing": (practice_zone.__wrapped__, ConfigError),
    "hl7v2 setting": (zone.__wrapped__, ConfigError),
    "fhir setting": (timezone_of, ValidationError),
    "csv setting": (lambda name: RowReader(EXPORTS[0], Context(practice="p1", config={"timezone": name})),
                    ConfigError),
}


@pytest.mark.parametrize("name", ["America", "Europe/" + "x" * 300])
@pytest.mark.parametrize("reader", sorted(ZONE_READERS))
def test_a_time_zone_that_is_a_folder_or_too_long_is_refused_as_unknown(reader: str, name: str) -> None:
    # "America" is a folder of the zone database (IsADirectoryError), the long name too long for a file
    # name (OSError): both escaped as tracebacks
    read, error = ZONE_READERS[reader]
    with pytest.raises(error, match="time zone"):
        read(name)


@pytest.mark.parametrize("name", ["America", "Europe/" + "x" * 300])
def test_a_mapping_whose_time_zone_is_a_folder_or_too_long_names_the_line(name: str) -> None:
    with pytest.raises(MappingError) as caught:
        load(f"version: 2\ntimezone: {name}\n")
    assert caught.value.location == "line 2, timezone"
    assert "is not an IANA time zone" in caught.value.message


# -- the mapping loader -----------------------------------------------------------------------------------------------
def test_a_mapping_with_an_empty_version_loads_as_version_one() -> None:
    # was TypeError: int(None) — the schema check lets `version:` without a value through
    assert load("version:\npractice: derm\n").version == 1


@pytest.mark.parametrize("text", ["code_maps: &all\n  payer: *all\n", "payer_patterns: &list [*list]\n"])
def test_an_alias_inside_the_value_it_names_is_refused(text: str) -> None:
    # was RecursionError: walking a value that contains itself never ends
    with pytest.raises(MappingError) as caught:
        load(text)
    assert caught.value.location.startswith("line 1, ")
    assert "an alias refers to a value it is in" in caught.value.message


def test_an_alias_bomb_is_refused_as_too_large_and_quickly() -> None:
    # nine aliases of nine aliases, eight levels: 43 million values; the line index walked them all
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 9)]
    started = time.monotonic()
    with pytest.raises(MappingError, match="too large for a mapping file"):
        load("\n".join(levels) + "\n")
    assert time.monotonic() - started < 20  # about a second; unbounded before


@pytest.mark.parametrize("text", ["[" * 3000, "x: " + "{a: " * 2000])
def test_deep_flow_nesting_is_refused_quickly(text: str) -> None:
    # was RecursionError, after seconds: the YAML reader's time grows with the square of the nesting
    started = time.monotonic()
    with pytest.raises(MappingError, match="nested too deeply"):
        load(text)
    assert time.monotonic() - started < 2  # milliseconds now; three seconds and more before


def test_deep_block_nesting_is_refused() -> None:
    # was RecursionError: the YAML reader recurses once per level
    with pytest.raises(MappingError, match="nested too deeply to be a mapping file"):
        load("- " * 2000 + "x\n")


# -- FHIR: JSON nested deeper than the validator can follow ---------------------------------------------------------
def test_a_resource_nested_hundreds_of_levels_deep_is_refused_by_name() -> None:
    # was RecursionError in R4 validation (orjson reads 1024 levels; pydantic follows about 120 extensions)
    extension: dict[str, Any] = {"url": "http://example.org/x", "valueString": "a"}
    for _ in range(300):
        extension = {"url": "http://example.org/x", "extension": [extension]}
    data = json.dumps({"resourceType": "Patient", "id": "p1", "extension": [extension]}).encode()
    connector = FhirConnector()
    context = Context(practice="p1", origin="deep.json")
    with pytest.raises(ValidationError, match="nests too deeply"):
        [envelope] = connector.split(data, origin="deep.json")
        connector.to_canonical(connector.parse(envelope, context), context)


@pytest.mark.parametrize("strict", [False, True])
def test_a_contained_resource_of_no_r4_type_is_refused_by_name(strict: bool) -> None:
    # was KeyError from the R4 models ('R4.PractitionrType'), reported as a connector bug
    data = json.dumps({"resourceType": "Patient", "id": "p1", "gender": "other",
                       "contained": [{"resourceType": "Practitionr", "id": "gp"}],
                       "generalPractitioner": [{"reference": "#gp"}]}).encode()
    connector = FhirConnector()
    context = Context(practice="p1", origin="contained.json", strict=strict)
    [envelope] = connector.split(data, origin="contained.json")
    with pytest.raises(ValidationError) as caught:
        connector.parse(envelope, context)
    assert "a resource inside it has no R4 resourceType" in caught.value.message


# -- X12: counts in digits that are not ASCII -------------------------------------------------------------------------
@pytest.mark.parametrize(("old", "new", "location"), [
    (b"SE*35*0001", b"SE*\xb35*0001", "SE-01"),  # Latin-1 0xB3 is '³', a digit to str.isdigit, not to int()
    (b"GE*2*9001", b"GE*\xb2*9001", "GE-01"),
    (b"IEA*1*", b"IEA*\xb9*", "IEA-01"),
])
def test_an_x12_count_in_superscript_digits_is_a_count_mismatch(old: bytes, new: bytes, location: str) -> None:
    # was ValueError: invalid literal for int()
    data = (ROOT / "connectors" / "hub_x12" / "samples" / "remit_835.x12").read_bytes()
    assert old in data
    try:
        envelopes = X12Connector().split(data.replace(old, new), origin="remit.x12")
    except ParseError as exc:  # a group or interchange count: the whole file is refused
        assert location in (exc.location or "")
        return
    errors = [e.error for e in envelopes if e.error is not None]
    assert errors and location in (errors[0].location or "")


# -- the CSV section of a mapping: keys YAML reads as something else than text ---------------------------------------
@pytest.mark.parametrize(("key", "shown"), [("~", "columns.None"), ("1", "columns[1]"), ("yes", "columns[True]")])
def test_a_csv_column_map_key_that_is_not_text_is_a_mapping_problem(key: str, shown: str) -> None:
    # was AttributeError: 'NoneType' object has no attribute 'rpartition'
    text = ("version: 1\nconnectors:\n  csv:\n    exports:\n      - kind: appointment\n"
            f"        columns: {{source_id: Appt ID, {key}: Other}}\n")
    with pytest.raises(MappingError) as caught:
        load_mapping(text, source="m.yaml", vocabulary=Vocabulary())
    assert caught.value.location == f"line 6, connectors.csv.exports[0].{shown}"
    assert "a model field name (text)" in caught.value.message


@pytest.mark.parametrize("item", ["{field: start}", "[start]"])
def test_a_required_field_that_is_a_mapping_or_a_list_is_a_mapping_problem(item: str) -> None:
    # was TypeError: unhashable type, looking the item up among the kind's field names
    with pytest.raises(MappingError) as caught:
        load(f"version: 1\ngo_live:\n  required_fields:\n    appointment: [source_id, {item}]\n")
    assert caught.value.location == "line 4, go_live.required_fields.appointment[1]"
    assert "appointment has no field" in caught.value.message


def test_an_x12_count_of_thousands_of_digits_is_a_count_mismatch() -> None:
    # was ValueError: int() refuses a string of more than 4,300 digits
    data = (ROOT / "connectors" / "hub_x12" / "samples" / "remit_835.x12").read_bytes()
    envelopes = X12Connector().split(data.replace(b"SE*35*0001", b"SE*" + b"9" * 5000 + b"*0001"), origin="r.x12")
    errors = [e.error for e in envelopes if e.error is not None]
    assert errors and errors[0].location and "SE-01" in errors[0].location


# -- found by the million-input run of the CSV and mapping targets ------------------------------------------------
def test_a_money_value_with_a_huge_exponent_is_out_of_range_not_an_overflow() -> None:
    # was decimal.Overflow: abs() of 1E+999999999 rounds to the decimal context and overflows
    from hub.model.schemas import Money

    for text in ("1E+999999999", "-9E+999999999"):
        with pytest.raises(Exception) as caught:
            Money().deserialize(text)
        assert type(caught.value).__name__ == "ValidationError" and "out of range" in str(caught.value)


def test_a_mapping_key_written_as_an_impossible_date_is_a_mapping_problem() -> None:
    # was ValueError from the YAML reader's date constructor: "month must be in 1..12"
    with pytest.raises(MappingError) as caught:
        load("2025-00-01: x\n")
    assert "not valid YAML" in str(caught.value) and "month must be in 1..12" in str(caught.value)
