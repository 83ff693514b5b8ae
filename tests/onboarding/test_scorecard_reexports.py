"""The go-live duplicate share over hand-made exports: a corrected re-export repeating unchanged rows, the
same export sent again, and repeats within one export; what the hub does not read (unpriced charges, parts
not mapped). Every expected figure is counted by hand from the files written here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from hub.cli import cli
from hub.mapping import load_mapping
from hub.onboarding.scorecard import render_text
from hub.onboarding.sources import check_files, check_stored
from hub.plugins import load_plugins

MAPPING = """version: 1
practice: lakeview
timezone: America/Chicago
connectors:
  csv:
    exports:
      - kind: appointment
        columns: {source_id: "Appt ID", patient_source_id: MRN, start: "Appt Date/Time", status: Status}
      - kind: charge
        columns: {source_id: "Charge ID", patient_source_id: MRN, service_date: DOS, procedure_code: CPT,
                  amount: "Charge Amount"}
go_live:
  max_duplicate_share: 0.15
  min_completeness: 0.5
"""
HEADER = "Appt ID,MRN,Appt Date/Time,Status"
ROWS = ["A1,M1,2025-03-03 09:00,booked", "A2,M2,2025-03-03 09:30,booked", "A3,M3,2025-03-04 10:00,booked",
        "A4,M4,2025-03-04 10:30,booked"]


def export(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_bytes(("\r\n".join([header, *rows]) + "\r\n").encode())
    return path


def history(folder: Path) -> Path:
    """17 rows in four files, read in this order (sorted names):

    a: the first export, A1-A4 (4 rows)
    b: a byte copy of a, sent again (4 rows: duplicates of a's rows, by file and line)
    c: the corrected re-export: A1-A3 unchanged, A4 moved, A5 new (5 rows, all new messages)
    d: A6, A7, A6 again unchanged, A7 again as cancelled (4 rows: 1 unchanged repeat, 1 conflicting)
    """
    folder.mkdir()
    export(folder / "a_appts_2025-03-01.csv", ROWS)
    shutil.copy(folder / "a_appts_2025-03-01.csv", folder / "b_appts_2025-03-01_resent.csv")
    export(folder / "c_appts_2025-03-08.csv", [*ROWS[:3], "A4,M4,2025-03-05 11:00,booked",
                                               "A5,M5,2025-03-06 08:00,booked"])
    export(folder / "d_appts_2025-03-15.csv", ["A6,M6,2025-03-17 09:00,booked", "A7,M7,2025-03-17 09:30,booked",
                                               "A6,M6,2025-03-17 09:00,booked", "A7,M7,2025-03-17 09:30,cancelled"])
    return folder


def duplicate_check(card: dict) -> dict:
    (check,) = [c for c in card["checks"] if c["name"] == "duplicate share"]
    return check


def assert_history_figures(card: dict) -> None:
    messages = card["messages"]
    assert messages["read"] == 17 and messages["refused"] == 0
    assert messages["duplicates"] == 4  # the copy: shown, as the message store tells it
    assert messages["repeats_in_export"] == {"unchanged": 1, "conflicting": 1}
    assert messages["duplicates_counted"] == 2  # the copy and the re-exported rows do not count
    check = duplicate_check(card)
    assert check["value"] == round(2 / 17, 4) and check["ok"]  # 11.8 % <= 15 %; counting the copy: 35 %


def test_rows_repeated_by_later_exports_do_not_count_repeats_within_one_export_do(tmp_path: Path) -> None:
    mapping = load_mapping(MAPPING)
    card = check_files(load_plugins(), "lakeview", mapping, [str(history(tmp_path / "h"))], findings=False)
    assert_history_figures(card)
    assert card["records"] == {"appointment": 13}  # 17 read - 4 duplicates
    text = render_text(card)
    assert ("duplicates counted for go-live 2 (rows repeating a record of the same export: 1 unchanged, "
            "1 conflicting; re-exported rows not counted: 4)") in text


def test_the_same_file_name_exported_again_is_another_export(tmp_path: Path) -> None:
    """Two exports under one name (the second overwrote the first between two runs): one export each, so
    A1 in the second is a re-exported row, not a repeat within an export."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    export(one / "appts.csv", ROWS[:2])
    export(two / "appts.csv", [ROWS[0], "A9,M9,2025-03-07 09:00,booked"])
    card = check_files(load_plugins(), "lakeview", load_mapping(MAPPING), [str(one), str(two)], findings=False)
    assert card["messages"]["repeats_in_export"] == {"unchanged": 0, "conflicting": 0}
    assert card["messages"]["duplicates_counted"] == 0


def test_the_stored_scorecard_counts_the_same_way(runtime, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mapping = tmp_path / "lakeview.yaml"
    mapping.write_text(MAPPING)
    folder = history(tmp_path / "h")
    run = CliRunner()
    assert run.invoke(cli, ["practice", "add", "lakeview", "--name", "Lakeview", "--mapping", str(mapping)]
                      ).exit_code == 0
    done = run.invoke(cli, ["onboard", "backfill", "--practice", "lakeview", "--quiet", str(folder)])
    assert "messages accepted 13  duplicate 4  error 0" in done.output, done.output
    assert_history_figures(check_stored(runtime, "lakeview"))
    # the backfill of a second copy of the whole history adds 17 duplicates, none counted for go-live
    again = tmp_path / "again"
    shutil.copytree(folder, again)
    run.invoke(cli, ["onboard", "backfill", "--practice", "lakeview", "--quiet", str(again)])
    card = check_stored(runtime, "lakeview")
    assert card["messages"]["duplicates"] == 4 + 17 and card["messages"]["duplicates_counted"] == 2


HL7 = ("MSH|^~\\&|DERMEHR|NORTHDERM|MSOHUB|MSO|20250304093000-0500||ADT^A04^ADT_A01|{ctl}|P|2.5.1\r"
       "EVN|A04|20250304093000-0500\r"
       "PID|1||{mrn}^^^NORTHDERM^MR||Testperson^Alex||19790512|F\r")


def test_a_resent_hl7_message_still_counts(tmp_path: Path) -> None:
    (tmp_path / "a.hl7").write_text(HL7.format(ctl="C1", mrn="M1"))
    (tmp_path / "b.hl7").write_text(HL7.format(ctl="C1", mrn="M1"))  # the interface sent it again
    (tmp_path / "c.hl7").write_text(HL7.format(ctl="C2", mrn="M2"))
    card = check_files(load_plugins(), "lakeview", load_mapping(MAPPING), [str(tmp_path)], findings=False)
    assert card["messages"]["duplicates"] == card["messages"]["duplicates_counted"] == 1
    assert duplicate_check(card)["value"] == round(1 / 3, 4)


CHARGES = "Charge ID,MRN,DOS,CPT,Charge Amount"
BUNDLE = {"resourceType": "Bundle", "type": "collection", "entry": [
    {"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient", "id": "p1", "gender": "female",
                                            "birthDate": "1979-05-12", "name": [{"family": "Testperson"}]}},
    {"fullUrl": "urn:uuid:o1", "resource": {"resourceType": "Observation", "id": "o1", "status": "final",
                                            "code": {"text": "a"}}},
    {"fullUrl": "urn:uuid:o2", "resource": {"resourceType": "Observation", "id": "o2", "status": "final",
                                            "code": {"text": "b"}}},
    {"fullUrl": "urn:uuid:m1", "resource": {"resourceType": "Medication", "id": "m1"}}]}


def test_the_scorecard_shows_unpriced_charges_and_the_parts_not_read(tmp_path: Path) -> None:
    export(tmp_path / "charges.csv", ["C1,M1,03/03/2025,99213,$120.00", "C2,M1,03/03/2025,11102,",
                                      "C3,M2,03/04/2025,17110,", "C4,M3,03/04/2025,99212,80.00"], header=CHARGES)
    (tmp_path / "bundle1.json").write_text(json.dumps(BUNDLE))
    second = json.loads(json.dumps(BUNDLE).replace('"p1"', '"p2"').replace("urn:uuid:o", "urn:uuid:x"))
    (tmp_path / "bundle2.json").write_text(json.dumps(second))
    card = check_files(load_plugins(), "lakeview", load_mapping(MAPPING), [str(tmp_path)], findings=False)
    assert card["unpriced_charges"] == {"charges": 4, "unpriced": 2, "share": 0.5}
    assert card["not_mapped"] == {"Observation": 4, "Medication": 2}  # two bundles' tallies summed
    text = render_text(card)
    assert "charges without an amount (unpriced) 2/4 50.0 %" in text
    assert "sent but not read by the hub (parts not mapped, by type)" in text
    assert any(line.split() == ["Observation", "4"] for line in text.splitlines())
    (tmp_path / "m.yaml").write_text(MAPPING)
    done = CliRunner().invoke(cli, ["onboard", "check", "--practice", "lakeview", "--format", "json",
                                    "--mapping", str(tmp_path / "m.yaml"), "--no-findings",
                                    str(tmp_path / "charges.csv")])
    assert json.loads(done.stdout)["unpriced_charges"]["unpriced"] == 2
