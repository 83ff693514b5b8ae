"""Mapping files are checked by a schema at load and by ``hub mapping validate``; problems name line and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from hub.errors import MappingError
from hub.mapping import load_mapping
from hub.mapping.schema import check_text, npi_is_valid
from hub.mapping.vocabulary import load_vocabulary

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "mappings" / "example-practice.yaml"


def problems(text: str) -> list[tuple[int | None, str]]:
    _, found = check_text(textwrap.dedent(text), load_vocabulary())
    return [(p.line, p.key) for p in found]


def test_the_example_mapping_and_vocabularies_are_valid() -> None:
    vocabulary = load_vocabulary()
    for name in ("service_lines", "visit_categories", "payers", "cancel_categories", "locations", "providers"):
        assert vocabulary.has(name), name
    assert all(npi_is_valid(npi) for npi in vocabulary.codes("providers"))
    _, found = check_text(EXAMPLE.read_text(), vocabulary)
    assert found == []
    mapping = load_mapping(EXAMPLE.read_text(), source=str(EXAMPLE))
    assert mapping.version == 1 and mapping.practice == "example-practice"


def test_every_problem_names_its_line_and_key() -> None:
    found = problems("""\
        version: 2
        code_maps:
          visit_type:
            NP: {service_line: dermatology_typo, visit_category: new}
            EST: {service_line: medical_dermatology, colour: blue}
          provider:
            DR1: "1234567890"
          payer:
            AETNA: {payer: aetna, financial_class: gold}
          shoe_size: {}
        connectors:
          hl7v2:
            overrides:
              patient_id: {from: PID-2, transform: reverse}
              favourite_colour: ZZZ.1
          csv:
            on_bad_row: ignore
            exports:
              - kind: appointment
                columns: {source_id: "Appt ID", not_a_field: "X"}
        """)
    assert (4, "code_maps.visit_type.NP.service_line") in found
    assert (5, "code_maps.visit_type.EST.colour") in found
    assert (7, "code_maps.provider.DR1") in found
    assert (9, "code_maps.payer.AETNA.financial_class") in found
    assert (10, "code_maps.shoe_size") in found
    assert (14, "connectors.hl7v2.overrides.patient_id.from") in found
    assert (14, "connectors.hl7v2.overrides.patient_id.transform") in found
    assert (15, "connectors.hl7v2.overrides.favourite_colour") in found
    assert (17, "connectors.csv.on_bad_row") in found
    assert (20, "connectors.csv.exports[0].columns.not_a_field") in found


def test_repeated_keys_and_yaml_syntax_errors_have_lines() -> None:
    assert (4, "code_maps.location.LP") in problems("""\
        version: 1
        code_maps:
          location: {LP: chi-lincoln-park,
                     LP: chi-oak-brook}
        """)
    assert problems("version: 1\ncode_maps:\n  location: [unclosed\n")[0][0] == 4


def test_load_raises_a_mapping_error_with_line_and_key() -> None:
    text = "version: 1\ncode_maps:\n  cancel_reason:\n    PT: not_a_category\n"
    with pytest.raises(MappingError) as caught:
        load_mapping(text, source="derm.yaml")
    assert str(caught.value).startswith("derm.yaml, line 4, code_maps.cancel_reason.PT: 'not_a_category' is not")


def test_mapping_validate_command(tmp_path: Path) -> None:
    from hub.cli import cli

    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ncode_maps:\n  location:\n    LP: nowhere\n  payer:\n"
                   "    X: {payer: aetna, financial_class: gold}\n")
    runner = CliRunner()
    ok = runner.invoke(cli, ["mapping", "validate", str(EXAMPLE)])
    assert ok.exit_code == 0 and "ok (version 1" in ok.output
    result = runner.invoke(cli, ["mapping", "validate", str(bad)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0].startswith(f"{bad}, line 4, code_maps.location.LP: 'nowhere' is not an MSO location")
    assert lines[1].startswith(f"{bad}, line 6, code_maps.payer.X.financial_class: financial_class must be one of")


def test_names_lists_transforms_and_overrides() -> None:
    from hub.cli import cli

    out = CliRunner().invoke(cli, ["mapping", "names"]).output
    assert "strip_leading_zeros" in out and "patient_id" in out and "PID.3.1" in out


@pytest.mark.parametrize("npi,valid", [("1234567893", True), ("1234567890", False), ("123456789", False)])
def test_npi_check_digit(npi: str, valid: bool) -> None:
    assert npi_is_valid(npi) is valid


def test_hl7_overrides_come_with_defaults_filled_in() -> None:
    from hub.mapping.schema import iter_overrides, parse_hl7_path
    from hub.mapping.transforms import apply_transforms

    mapping = load_mapping(EXAMPLE.read_text())
    overrides = {name: (path, names) for name, path, names in iter_overrides(mapping.connector_config("hl7v2"))}
    assert overrides == {"patient_id": ("PID.2.1", ["strip_leading_zeros"]), "visit_type": ("AIS.3.1", [])}
    assert parse_hl7_path("PID.2.1") == ("PID", 2, 1, None) and parse_hl7_path("IN1.4") == ("IN1", 4, None, None)
    assert apply_transforms("000123", ["strip_leading_zeros"]) == "123"
    assert apply_transforms("  np  ", ["strip", "upper"]) == "NP"
