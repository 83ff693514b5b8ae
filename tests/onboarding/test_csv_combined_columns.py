"""CSV column maps that combine cells: an appointment's date and time in two columns make one ``start``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hub_csv import CsvConnector

from hub.cli import cli
from hub.connector import Context
from hub.errors import HubError

HEADER = "Appt ID,MRN,Appt Date,Appt Time,Visit,Line,Type"
START = {"columns": ["Appt Date", "Appt Time"], "format": "%m/%d/%Y %I:%M %p"}


def config(start: dict | None = None, **columns: object) -> dict:
    return {"exports": [{"kind": "appointment", "columns": {"source_id": "Appt ID", "patient_source_id": "MRN",
                                                            "start": start or START, **columns}}]}


def read(rows: list[str], cfg: dict | None = None, origin: str = "exports/appts.csv") -> list:
    connector = CsvConnector()
    data = ("\r\n".join([HEADER, *rows]) + "\r\n").encode()
    out = []
    for envelope in connector.split(data, origin=origin):
        try:
            out.append(connector.normalize(envelope, Context(practice="p", config=cfg or config(), origin=origin)))
        except HubError as exc:
            out.append(exc)
    return out


def test_a_date_column_and_a_time_column_make_one_start() -> None:
    first, second = read(["A1,M1,03/04/2025,09:30 AM,,,NP", "A2,M2,12/31/2025,01:05 PM,,,NP"])
    assert first[0]["start"] == "2025-03-04T09:30:00"  # no offset: read in the practice's zone by the core
    assert second[0]["start"] == "2025-12-31T13:05:00"


def test_without_a_format_the_joined_cells_are_read_with_the_export_date_formats() -> None:
    cfg = config({"columns": ["Appt Date", "Appt Time"]})
    (records,) = read(["A1,M1,2025-03-04,14:05,,,NP"], cfg)
    assert records[0]["start"] == "2025-03-04T14:05:00"  # '%Y-%m-%d %H:%M', a default format


def test_an_empty_cell_of_a_date_time_is_an_error_naming_file_line_and_column() -> None:
    ok, empty = read(["A1,M1,03/04/2025,09:30 AM,,,NP", "A2,M2,03/05/2025,,,,NP"])
    assert ok[0]["start"] == "2025-03-04T09:30:00"
    assert str(empty).startswith("exports/appts.csv, line 3: column 'Appt Time' is empty")
    assert "'Appt Date' + 'Appt Time'" in str(empty)


def test_a_cell_that_does_not_fit_is_named_and_its_value_is_not_quoted() -> None:
    bad_time, bad_date, both = read(["A1,M1,03/04/2025,25:99 AM,,,NP", "A2,M2,13/44/2025,09:30 AM,,,NP",
                                     "A3,M3,someday,later on,,,NP"])
    assert str(bad_time).startswith("exports/appts.csv, line 2: column 'Appt Time' does not fit")
    assert str(bad_date).startswith("exports/appts.csv, line 3: column 'Appt Date' does not fit")
    assert "(appointment.start)" in str(bad_time) and "'%m/%d/%Y %I:%M %p'" in str(bad_time)
    # neither cell fits: both columns named, no single culprit claimed
    assert str(both).startswith("exports/appts.csv, line 4: columns 'Appt Date' + 'Appt Time' (appointment.start) "
                                "are not a date-time")
    for error, value in ((bad_time, "25:99"), (bad_date, "13/44"), (both, "someday")):
        assert value not in str(error)


def test_text_cells_are_joined_by_the_separator_and_empty_ones_left_out() -> None:
    cfg = config(**{"source_id": {"columns": ["Visit", "Line"], "separator": "-"}})
    joined, alone, none = read(["X,M1,03/04/2025,09:30 AM,V100,2,NP", "X,M2,03/04/2025,09:30 AM,V101,,NP",
                                "X,M3,03/04/2025,09:30 AM,,,NP"], cfg)
    assert joined[0]["source_id"] == "V100-2"
    assert alone[0]["source_id"] == "V101"
    assert str(none).startswith("exports/appts.csv, line 4: columns 'Visit' + 'Line' (source_id) is empty")


def test_a_header_without_one_of_the_combined_columns_fits_no_export() -> None:
    connector = CsvConnector()
    data = b"Appt ID,MRN,Appt Date\r\nA1,M1,03/04/2025\r\n"
    (envelope,) = connector.split(data, origin="x.csv")
    with pytest.raises(HubError, match="missing column\\(s\\) 'Appt Time'"):
        connector.normalize(envelope, Context(practice="p", config=config(), origin="x.csv"))


def test_findings_count_combined_columns_as_used() -> None:
    connector = CsvConnector()
    (envelope,) = connector.split(("\r\n".join([HEADER, "A1,M1,03/04/2025,09:30 AM,V1,1,NP"]) + "\r\n").encode())
    found = connector.findings(envelope, Context(practice="p", config=config()))
    assert sorted(found) == ["line 2: column 'Line' is not in the column map (ignored)",
                             "line 2: column 'Type' is not in the column map (ignored)",
                             "line 2: column 'Visit' is not in the column map (ignored)"]


MAPPING = """version: 1
practice: lakeview
timezone: America/Chicago
connectors:
  csv:
    exports:
      - kind: appointment
        columns:
          source_id: "Appt ID"
          patient_source_id: MRN
          start: {columns: ["Appt Date", "Appt Time"], format: "%m/%d/%Y %I:%M %p"}
          status: Status
"""


def test_mapping_validate_checks_a_combination(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(MAPPING)
    done = CliRunner().invoke(cli, ["mapping", "validate", str(good)])
    assert done.exit_code == 0, done.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(MAPPING.replace("status: Status", "status: {columns: [Status]}") +
                   "          visit_type: {column: Type, columns: [A, B]}\n"
                   "          duration_min: {columns: [A, B], format: '%H'}\n"
                   "          cancelled_at: {columns: [C, D], format: 12, separator: 3}\n")
    done = CliRunner().invoke(cli, ["mapping", "validate", str(bad)])
    assert done.exit_code == 1
    problems = sorted(line.split(", ", 2)[1:] for line in done.stderr.splitlines())
    key = "connectors.csv.exports[0].columns."
    assert problems == sorted([
        ["line 12", f"{key}status.columns: columns is a list of at least two column headers, combined in order"],
        ["line 13", f"{key}visit_type: a column spec names either column (one header) or columns (a list of "
                    "headers to combine)"],
        ["line 14", f"{key}duration_min.format: format is for date and date-time fields; duration_min is not one"],
        ["line 15", f"{key}cancelled_at.format: format is a strptime format of the combined text (or a list of "
                    "them), such as '%m/%d/%Y %I:%M %p'"],
        ["line 15", f"{key}cancelled_at.separator: separator is a text put between the cells (default: one space)"],
    ])


def test_the_dry_run_scorecard_reads_the_combined_start(tmp_path: Path) -> None:
    mapping = tmp_path / "lakeview.yaml"
    mapping.write_text(MAPPING)
    export = tmp_path / "appts.csv"
    export.write_text("Appt ID,MRN,Appt Date,Appt Time,Status\r\nA1,M1,01/06/2025,08:00 AM,booked\r\n"
                      "A2,M2,02/14/2025,04:45 PM,booked\r\nA3,M3,02/15/2025,,booked\r\n")
    done = CliRunner().invoke(cli, ["onboard", "check", "--practice", "lakeview", "--mapping", str(mapping),
                                    "--format", "json", "--no-findings", str(export)])
    card = json.loads(done.stdout)
    assert card["messages"]["read"] == 3 and card["messages"]["refused"] == 1
    assert card["date_range"] == {"from": "2025-01-06", "to": "2025-02-14"}
    assert card["completeness"]["appointment"]["start"]["filled"] == 2
    (reason,) = card["messages"]["refusal_reasons"]
    assert reason["example"] == f"{export} line 4" and "column 'Appt Time' is empty" in reason["reason"]
