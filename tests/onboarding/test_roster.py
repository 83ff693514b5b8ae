"""``hub roster``: providers and locations added to the MSO rosters, and the scorecard's rostered check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from hub.cli import cli
from hub.mapping import load_mapping
from hub.onboarding.sources import check_files
from hub.plugins import load_plugins

ROOT = Path(__file__).resolve().parents[2]
MAPPING = """version: 1
practice: lakeview
timezone: America/Chicago
code_maps:
  provider: {DRMAP: "1003000126"}
  location: {LP: chi-lincoln-park}
connectors:
  csv:
    exports:
      - kind: appointment
        columns: {source_id: "Appt ID", patient_source_id: MRN, provider_source_id: Provider,
                  location_source_id: Location, start: "Appt Date/Time", status: Status}
"""
# 1518190933 is on the shipped roster; 1003000126 and 1234567893 are valid NPIs that are not
ROWS = ["A1,M1,1518190933,chi-oak-brook,2025-03-03 09:00,booked",
        "A2,M2,1003000126,LP,2025-03-03 09:30,booked",
        "A3,M3,DRMAP,chi-west-loop,2025-03-03 10:00,booked",
        "A4,M4,DRNEW,ZZ,2025-03-03 10:30,booked",
        "A5,M5,DRNEW,LP,2025-03-03 11:00,booked"]


@pytest.fixture
def rosters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "mso"
    shutil.copytree(ROOT / "mappings" / "mso", folder)
    monkeypatch.setenv("HUB_MSO_VOCABULARIES", str(folder))
    return folder


def hub(*args: str, code: int = 0) -> str:
    done = CliRunner().invoke(cli, list(args))
    assert done.exit_code == code, done.output
    return done.output


def unrostered(folder: Path) -> dict[str, dict[str, str]]:
    export = folder / "appts.csv"
    export.write_text("\r\n".join(["Appt ID,MRN,Provider,Location,Appt Date/Time,Status", *ROWS]) + "\r\n")
    card = check_files(load_plugins(), "lakeview", load_mapping(MAPPING), [str(export)], findings=False)
    return {what: {row["id"]: row["reason"] for row in rows} for what, rows in card["unrostered"].items()}


def test_add_a_provider_and_a_location_then_the_scorecard_names_neither(rosters: Path, tmp_path: Path) -> None:
    before = unrostered(tmp_path)
    assert before == {
        "providers": {"1003000126": "NPI not on the MSO roster",  # sent as the NPI itself: never "no NPI"
                      "DRMAP": "NPI not on the MSO roster", "DRNEW": "no NPI mapped"},
        "locations": {"chi-west-loop": "no MSO location mapped", "ZZ": "no MSO location mapped"}}
    out = hub("roster", "add-provider", "1003000126", "--name", "Newman, Dana", "--specialty", "dermatology")
    assert f"provider 1003000126 added to the roster ({rosters / 'providers.yaml'})" in out
    hub("roster", "add-location", "chi-west-loop", "--name", "West Loop Dermatology", "--city", "Chicago",
        "--state", "IL")
    after = unrostered(tmp_path)
    assert after == {"providers": {"DRNEW": "no NPI mapped"}, "locations": {"ZZ": "no MSO location mapped"}}
    # the files keep what they held, one line more each
    assert (rosters / "providers.yaml").read_text() == (ROOT / "mappings/mso/providers.yaml").read_text() + (
        '  "1003000126": {family_name: Newman, given_name: Dana, specialty: dermatology}\n')
    assert (rosters / "locations.yaml").read_text().endswith(
        "  chi-west-loop: {name: West Loop Dermatology, city: Chicago, state: IL}\n")
    listed = json.loads(hub("roster", "list", "--format", "json"))
    assert listed["folder"] == str(rosters)
    assert listed["providers"]["1003000126"] == {"family_name": "Newman", "given_name": "Dana",
                                                 "specialty": "dermatology"}
    assert listed["locations"]["chi-west-loop"]["name"] == "West Loop Dermatology"
    assert len(listed["providers"]) == 13 and len(listed["locations"]) == 10  # 12 and 9 shipped
    text = hub("roster", "list")
    assert "1003000126           Newman, Dana  specialty=dermatology" in text


def test_a_mapping_may_name_a_location_only_once_it_is_on_the_roster(rosters: Path, tmp_path: Path) -> None:
    mapping = tmp_path / "m.yaml"
    mapping.write_text(MAPPING.replace("LP: chi-lincoln-park", "LP: chi-lincoln-park, WEST: chi-west-loop"))
    refused = hub("mapping", "validate", str(mapping), code=1)
    assert "code_maps.location.WEST" in refused and "chi-west-loop" in refused
    hub("roster", "add-location", "chi-west-loop", "--name", "West Loop Dermatology")
    assert "ok" in hub("mapping", "validate", str(mapping))


def test_roster_errors_are_one_line_and_change_nothing(rosters: Path) -> None:
    shipped = {p.name: p.read_text() for p in rosters.iterdir()}
    cases = [
        (("add-provider", "1234567890", "--name", "X"), "'1234567890' is not an NPI"),  # check digit is 3
        (("add-provider", "1518190933", "--name", "Greer, Hannah"), "1518190933 is on the providers roster already"),
        (("add-provider", "1234567893", "--name", " "), "--name must not be empty"),
        (("add-location", "Chi West", "--name", "X"), "'Chi West' is not a location code"),
        (("add-location", "chi-oak-brook", "--name", "X"), "chi-oak-brook is on the locations roster already"),
    ]
    for args, message in cases:
        done = CliRunner().invoke(cli, ["roster", *args])
        assert done.exit_code == 1 and message in done.stderr and "Traceback" not in done.output, args
    assert {p.name: p.read_text() for p in rosters.iterdir()} == shipped


def test_a_roster_file_that_holds_more_than_its_roster_is_not_written(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "mso"
    folder.mkdir()
    (folder / "providers.yaml").write_text('providers:\n  "1518190933": {family_name: Greer}\n'
                                           "locations:\n  chi-x: {name: X}\n")
    monkeypatch.setenv("HUB_MSO_VOCABULARIES", str(folder))
    done = CliRunner().invoke(cli, ["roster", "add-provider", "1234567893", "--name", "Newman"])
    assert done.exit_code == 1 and "holds other vocabularies than providers" in done.stderr
    # an empty folder: the roster file is made
    empty = tmp_path / "empty"
    monkeypatch.setenv("HUB_MSO_VOCABULARIES", str(empty))
    empty.mkdir()
    hub("roster", "add-provider", "1234567893", "--name", "Newman")
    assert json.loads(hub("roster", "list", "--format", "json"))["providers"] == {
        "1234567893": {"family_name": "Newman"}}
