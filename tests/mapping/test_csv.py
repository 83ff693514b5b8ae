"""The CSV connector: encodings, date formats, quoting, amounts, bad rows with line numbers, streaming."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest
from hub_csv import CsvConnector, money
from hub_csv.settings import check_export

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
    # the export's times carry no offset: the connector leaves them so, the core reads them in the practice's zone
    assert first[0]["start"] == "2025-07-04T13:05:00"
    assert first[0]["booked_at"] == "2025-06-01T08:00:00"
    assert second[0]["start"] == "2025-01-15T09:00:00"
    assert first[0]["status"] == "booked"
    from zoneinfo import ZoneInfo

    from hub.model.schemas import validate_record

    chicago = ZoneInfo(MAPPING.practice_zone(None) or "")
    summer = validate_record({**first[0], "practice": "p"}, chicago)
    assert summer["start"].isoformat() == "2025-07-04T13:05:00-05:00"  # daylight time in Chicago
    assert validate_record({**second[0], "practice": "p"}, chicago)["start"].isoformat() == "2025-01-15T09:00:00-06:00"


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


# ------------------------------------------------------------------ event time and times without offset
EVENT_HEADER = "Id,MRN,When,Status,Last,Modified"


def event_config(export: dict | None = None, **section: object) -> dict:
    """A column map without a timezone setting (times without offset stay naive for the hub);
    ``export`` adds settings to the export, keywords to the csv section."""
    spec = {"kind": "appointment", "columns": {"source_id": "Id", "patient_source_id": "MRN", "start": "When",
                                               "status": "Status", "patient.family_name": "Last"},
            "date_formats": ["%m/%d/%Y %I:%M %p", "%m/%d/%Y"], **(export or {})}
    return {"exports": [spec], **section}


def rows(*cells: str) -> bytes:
    return (EVENT_HEADER + "\r\n" + "\r\n".join(cells) + "\r\n").encode()


def test_times_without_an_offset_come_out_naive_when_no_timezone_is_set() -> None:
    [records] = normalize(rows("A1,M1,07/04/2025 01:05 PM,booked,Doe,"), config=event_config())
    appointment = records[-1]
    assert appointment["start"] == "2025-07-04T13:05:00"
    assert all("event_time" not in r for r in records)  # f.csv: no date in the name, none configured
    iso = normalize(b"Id,MRN,When,Status,Last,Modified\r\nA1,M1,2025-07-04T13:05:00+02:00,booked,Doe,\r\n",
                    config=event_config())
    assert iso[0][-1]["start"] == "2025-07-04T13:05:00+02:00"  # an offset sent is kept


def test_the_event_time_column_gives_every_record_of_the_row_its_time() -> None:
    config = event_config({"event_time_column": "Modified"})
    [records] = normalize(rows("A1,M1,07/04/2025 01:05 PM,booked,Doe,06/30/2025 04:45 PM"), config=config)
    assert {r["kind"]: r["event_time"] for r in records} == {"patient": "2025-06-30T16:45:00",
                                                             "appointment": "2025-06-30T16:45:00"}
    with_zone = normalize(rows("A1,M1,07/04/2025 01:05 PM,booked,Doe,06/30/2025 04:45 PM"),
                          config={**config, "timezone": "America/Chicago"})
    assert with_zone[0][-1]["event_time"] == "2025-06-30T16:45:00-05:00"


def test_an_empty_event_cell_falls_back_to_the_export_date_and_a_bad_one_names_the_column() -> None:
    config = event_config(event_time_column="Modified", export_date=dt.date(2025, 2, 28))  # as YAML reads it
    first, second = normalize(rows("A1,M1,07/04/2025 01:05 PM,booked,Doe,",
                                   "A2,M2,07/04/2025 01:05 PM,booked,Doe,someday"), config=config)
    assert first[-1]["event_time"] == "2025-02-28T00:00:00"
    assert isinstance(second, ParseError)
    assert str(second).startswith("f.csv, line 3: column 'Modified' (event_time)") and "someday" not in str(second)


def test_the_export_date_of_the_mapping_wins_over_the_file_name() -> None:
    [records] = normalize(rows("A1,M1,07/04/2025 01:05 PM,booked,Doe,"), origin="appts_2025-03-01.csv",
                          config=event_config(export_date="2025-02-27"))
    assert {r["event_time"] for r in records} == {"2025-02-27T00:00:00"}


@pytest.mark.parametrize(("origin", "expected"), [
    ("appointments_2025-03-01.csv", "2025-03-01T00:00:00"),
    ("/exports/2024-01-01/PM_EXPORT_20250301.csv", "2025-03-01T00:00:00"),  # the file's name, not its folder
    ("appts_2025_03_01.csv#line=5002", "2025-03-01T00:00:00"),  # a backfill chunk
    ("appts_20250101_20250131.csv", "2025-01-31T00:00:00"),  # a range: its end
    ("appts_2025-13-01.csv", None),  # no such date
    ("appts_2025-0301.csv", None),  # separators that do not match
    ("export_12025030199.csv", None),  # digits of something else
    ("appointments.csv", None),
])
def test_the_export_date_from_the_file_name(origin: str, expected: str | None) -> None:
    [records] = normalize(rows("A1,M1,07/04/2025 01:05 PM,booked,Doe,"), origin=origin, config=event_config())
    assert {r.get("event_time") for r in records} == {expected}


def test_the_mapping_schema_knows_the_event_time_settings() -> None:
    from hub.errors import MappingError

    text = """
connectors:
  csv:
    export_date: 2025-03-01
    exports:
      - kind: appointment
        event_time_column: Modified
        columns: {source_id: Id, start: When, status: Status}
"""
    mapping = load_mapping(text)
    [records] = normalize(b"Id,When,Status,Modified\r\nA1,03/04/2025,booked,\r\n",
                          config=mapping.connector_config("csv"))
    assert records[-1]["event_time"] == "2025-03-01T00:00:00"
    with pytest.raises(MappingError, match="export_date"):
        load_mapping(text.replace("2025-03-01", "March 1st"))


def test_a_patient_export_reads_street_line_and_email_like_phone_and_postal_code() -> None:
    export = {"kind": "patient",
              "columns": {"source_id": "MRN", "family_name": "Last", "given_name": "First", "birth_date": "DOB",
                          "address_line": "Street", "postal_code": "Zip", "phone": "Phone", "email": "E-mail"},
              "date_formats": ["%m/%d/%Y"]}
    assert not check_export(export).tree  # fields of the model: the column map takes them
    first, second = normalize(b"MRN,Last,First,DOB,Street,Zip,Phone,E-mail\r\n"
                              b"M1,Doe,Jane,01/02/1960,22 Home St,62701,217-555-0100,  jane@example.org \r\n"
                              b"M2,Roe,Alex,03/04/1970,,,,\r\n", config={"exports": [export]})
    [patient] = first
    assert (patient["address_line"], patient["postal_code"], patient["phone"], patient["email"]) == \
        ("22 Home St", "62701", "217-555-0100", "jane@example.org")
    [empty] = second  # empty cells: no value
    assert empty["address_line"] is None and empty["email"] is None and empty["family_name"] == "Roe"


def test_related_patient_street_line_and_email_from_an_appointment_export() -> None:
    config = {"exports": [{
        "kind": "appointment",
        "columns": {"source_id": "Id", "patient_source_id": "MRN", "start": "When", "status": "Status",
                    "patient.address_line": "Address", "patient.email": "Email"},
        "date_formats": ["%m/%d/%Y %H:%M"]}]}
    [records] = normalize(b"Id,MRN,When,Status,Address,Email\r\n"
                          b"A1,M1,03/04/2025 09:30,booked,\"5 Oak Ave, Apt 2\",jane@example.org\r\n", config=config)
    patient = {r["kind"]: r for r in records}["patient"]
    assert (patient["source_id"], patient["address_line"], patient["email"]) == \
        ("M1", "5 Oak Ave, Apt 2", "jane@example.org")
