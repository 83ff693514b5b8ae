"""The CSV connector: encodings, date formats, quoting, amounts, bad rows with line numbers, streaming."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hub_csv import CsvConnector, money

from hub.connector import Context
from hub.errors import ConfigError, HubError, ParseError
from hub.mapping import load_mapping
from hub.testing import connector_test_class

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted((ROOT / "connectors" / "hub_csv" / "samples").glob("*.csv"))
MAPPING = load_mapping((ROOT / "mappings" / "example-practice.yaml").read_text())
CONFIG = MAPPING.connector_config("csv")

TestCsvContract = connector_test_class(CsvConnector, samples=SAMPLES, config=CONFIG,
                                       malformed=[b"Appt ID,MRN\r\nA1,\"unclosed\r\n"])

HEADER = "Appt ID,MRN,Provider,Location,Appt Date/Time,Minutes,Appt Type,Status,Cancel Reason,Created,Cancelled On"


def normalize(data: bytes, origin: str = "f.csv", config: dict | None = None) -> list:
    connector = CsvConnector()
    context = Context(practice="p", config=config or CONFIG, origin=origin)
    out = []
    for envelope in connector.split(data, origin=origin):
        try:
            out.append(connector.normalize(envelope, context))
        except HubError as exc:
            out.append(exc)
    return out


def test_bom_cp1252_and_plain_utf8_read_the_same() -> None:
    row = "A1,M1,DRALV,LP,03/04/2025 09:30 AM,15,Café,Completed,,,\r\n"
    text = HEADER + "\r\n" + row
    results = [normalize(b"\xef\xbb\xbf" + text.encode()), normalize(text.encode("cp1252")),
               normalize(text.encode())]
    assert results[0] == results[1] == results[2]
    assert results[0][0][0]["visit_type"] == "Café"


def test_date_formats_timezone_and_quoted_newlines() -> None:
    data = (HEADER + ',Notes\r\nA1,M1,DRALV,LP,07/04/2025 01:05 PM,15,NP,Scheduled,,2025-06-01 08:00,,"a\r\nb, c"\r\n'
            "A2,M2,DRALV,LP,2025-01-15 09:00,30,NP,Completed,,,,\r\n").encode()
    first, second = normalize(data)
    assert first[0]["start"] == "2025-07-04T13:05:00-05:00"  # daylight time in Chicago
    assert first[0]["booked_at"] == "2025-06-01T08:00:00-05:00"
    assert second[0]["start"] == "2025-01-15T09:00:00-06:00"
    assert first[0]["status"] == "booked"


def test_a_bad_row_names_its_line_and_the_rest_loads() -> None:
    data = (HEADER + "\r\nA1,M1,DRALV,LP,03/04/2025 09:30 AM,15,NP,Completed,,,\r\n"
            'A2,M2,DRALV,LP,"03/04/2025\r\nlate",15,NP,Completed,,,\r\n'
            "A3,M3,DRALV,LP,31/31/2025 09:30 AM,15,NP,Completed,,,\r\n"
            "A4,M4,DRALV,LP,03/05/2025 09:30 AM,15,NP,Completed,,,\r\n").encode()
    results = normalize(data, origin="appts.csv")
    assert [type(r).__name__ for r in results] == ["list", "ParseError", "ParseError", "list"]
    assert str(results[1]).startswith("appts.csv, line 3: column 'Appt Date/Time'")
    assert str(results[2]).startswith("appts.csv, line 5: column 'Appt Date/Time'")  # line 3 spans two lines
    assert "31/31" not in str(results[2])  # values are never quoted back


def test_ragged_rows_and_broken_quoting() -> None:
    results = normalize((HEADER + "\r\nA1,M1,DRALV\r\n").encode())
    assert isinstance(results[0], ParseError) and "line 2" in str(results[0]) and "3 fields" in str(results[0])
    with pytest.raises(ParseError, match="line 3"):
        CsvConnector().split((HEADER + '\r\nA1,M1,DRALV,LP,"x,15\r\nA2\r\n').encode(), origin="x.csv")


def test_the_export_is_chosen_by_its_header_and_a_header_of_no_export_is_refused() -> None:
    charges = normalize((ROOT / "connectors/hub_csv/samples/charges.csv").read_bytes())
    assert {r["kind"] for recs in charges for r in recs} == {"charge"}
    results = normalize(b"Who,What\r\n1,2\r\n")
    assert isinstance(results[0], ParseError) and "fits no export" in str(results[0])


def test_without_a_column_map_the_error_says_what_to_add() -> None:
    with pytest.raises(ConfigError, match="connectors.csv.exports"):
        CsvConnector().normalize(CsvConnector().split(b"A,B\r\n1,2\r\n")[0], Context(practice="p"))


@pytest.mark.parametrize("text,expected", [("$1,234.50", "1234.50"), ("(12.00)", "-12.00"), ("1 000", "1000"),
                                           ("-3", "-3")])
def test_amounts(text: str, expected: str) -> None:
    assert money(text) == expected


def test_related_patient_and_coverage_records_from_extra_columns() -> None:
    config = {"timezone": "America/Chicago", "exports": [{
        "kind": "appointment",
        "columns": {"source_id": "Id", "patient_source_id": "MRN", "start": "When", "status": "Status",
                    "patient.family_name": "Last", "patient.birth_date": "DOB",
                    "coverage.payer_name": "Insurance"},
        "date_formats": ["%m/%d/%Y %H:%M", "%m/%d/%Y"]}]}
    [records] = normalize(b"Id,MRN,When,Status,Last,DOB,Insurance\r\n"
                          b"A1,M1,03/04/2025 09:30,booked,Doe,01/02/1960,AETNA PPO\r\n", config=config)
    kinds = {r["kind"]: r for r in records}
    assert kinds["patient"]["source_id"] == "M1" and kinds["patient"]["birth_date"] == "1960-01-02"
    assert kinds["coverage"]["source_id"] == "M1:AETNA PPO" and kinds["coverage"]["patient_source_id"] == "M1"


def test_streaming_in_chunks_keeps_line_numbers() -> None:
    rows = [f'A{i},M{i},DRALV,LP,03/04/2025 09:30 AM,15,NP,Completed,,,' for i in range(1, 8)]
    rows[2] = 'A3,M3,DRALV,LP,03/04/2025 09:30 AM,15,"N\r\nP",Completed,,,'
    data = ("\ufeff" + HEADER + "\r\n" + "\r\n".join(rows) + "\r\n").encode()
    connector = CsvConnector()
    chunks = list(connector.iter_chunks(io.BytesIO(data), rows=3))
    assert [first for _, first in chunks] == [2, 6, 9]  # the third row spans lines 4 and 5
    lines = [env.control_id for payload, first in chunks
             for env in connector.split(payload, origin=f"big.csv#line={first}")]
    assert lines == ["line 2", "line 3", "line 4", "line 6", "line 7", "line 8", "line 9"]
    assert sum(len(connector.split(p)) for p, _ in chunks) == 7


def test_detect_claims_csv_headers_only() -> None:
    assert CsvConnector.detect(b"\xef\xbb\xbfAppt ID,MRN\r\n1,2\r\n")
    for other in (b"MSH|^~\\&|A|B", b'{"resourceType": "Patient", "id": "x"}', b"ISA*00*", b"plain text",
                  b"#HUBPIPE v1\nAPPT|A"):
        assert not CsvConnector.detect(other)


def test_findings_name_unused_columns_and_unknown_values() -> None:
    data = (HEADER + ",Notes\r\nA1,M1,DRALV,LP,03/04/2025 09:30 AM,15,NP,Tentative,,,,x\r\n").encode()
    envelope = CsvConnector().split(data)[0]
    found = CsvConnector().findings(envelope, Context(practice="p", config=CONFIG, origin="f.csv"))
    assert any("'Notes' is not in the column map" in f for f in found)
    assert any("'Status' has a value the values table of status does not know" in f for f in found)
