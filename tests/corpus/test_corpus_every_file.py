"""Every file of ../shared/corpus (hl7v2/, fhir/, real/hl7v2/, real/fhir/, and x12/ once a connector reads
it), one case per file: it yields records, or is refused with a reason that names the element or segment,
or (no record, no error) says so on stderr with what it held; ``hub normalize`` never exits 0 with nothing
said. And the yield-rate floors of the real-world feeds work: at least 95 % of the HL7 v2 files and 75 % of
the FHIR files yield records.

Each file is normalized once, in this process (``tests/corpus/corpus_files.py``); the whole corpus takes a
few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.errors import HubError
from tests.corpus.corpus_files import (
    FHIR_FOLDERS,
    FOLDERS,
    HL7V2_FOLDERS,
    MISSING,
    X12_FOLDERS,
    corpus_params,
    files_in,
    outcome,
    plugins,
)


def test_the_corpus_folders_are_there(corpus: Path) -> None:
    for folder in FOLDERS:
        assert (corpus / folder).is_dir() and files_in(folder), f"{folder} is missing or empty in {corpus}"
    # the real-world samples of PROVENANCE.md: 79 HL7 v2 files and 84 FHIR files (more may come)
    assert len(files_in("real/hl7v2")) >= 79 and len(files_in("real/fhir")) >= 84


def check_refusal(rel: str, error: HubError) -> None:
    text = str(error)
    assert error.location, f"{rel}: refused without naming the element or segment: {text}"
    assert len(error.message.strip()) > 10, f"{rel}: a refusal needs a reason a person can act on: {text}"
    assert "Traceback" not in text


@pytest.mark.parametrize("rel", corpus_params(*HL7V2_FOLDERS, *FHIR_FOLDERS))
def test_each_file_yields_records_or_says_why(rel: str, corpus: Path) -> None:
    if rel == MISSING:
        pytest.fail(f"no corpus file was found under {corpus}")
    out = outcome(rel)
    said = out.stdout + out.stderr
    assert "Traceback" not in said, f"{rel}: hub normalize failed with a traceback:\n{out.stderr}"
    assert out.exit_code in (0, 1), f"{rel}: hub normalize exited {out.exit_code}:\n{out.stderr}"
    assert said.strip(), f"{rel}: hub normalize exited {out.exit_code} with nothing said"
    for error in out.errors:  # refused messages, also beside others' records, say where
        check_refusal(rel, error)
    if out.records:
        printed = [json.loads(line) for line in out.stdout.splitlines()]
        assert len(printed) == len(out.records), f"{rel}: hub normalize printed other records than it yields"
        assert out.exit_code == (1 if out.errors else 0)
    elif out.errors:
        assert out.exit_code == 1 and "hub: error:" in out.stderr, out.stderr
    else:  # neither records nor a refusal: it says so, and what its content was (not mapped, used for ...)
        summary = out.tally.summary()
        assert summary, f"{rel}: no record and no error, and nothing said about what it held"
        assert out.exit_code == 0 and f"no record ({summary}" in out.stderr, out.stderr


@pytest.mark.parametrize("rel", corpus_params(*X12_FOLDERS))
def test_each_x12_file_yields_records_or_says_why_once_a_connector_reads_it(rel: str, corpus: Path) -> None:
    if rel == MISSING:
        pytest.fail(f"no X12 file was found under {corpus}")
    try:
        plugins().connectors.detect((corpus / rel).read_bytes())
    except HubError:
        pytest.skip("no installed connector recognises X12 yet")
    test_each_file_yields_records_or_says_why(rel, corpus)


@pytest.mark.parametrize(("family", "folders", "floor"), [("HL7 v2", HL7V2_FOLDERS, 0.95),
                                                          ("FHIR", FHIR_FOLDERS, 0.75)])
def test_yield_rate_floor(family: str, folders: tuple[str, ...], floor: float, corpus: Path) -> None:
    files = files_in(*folders)
    assert files, f"no {family} file in {corpus}"
    silent = [rel for rel in files if not outcome(rel).records]
    rate = 1 - len(silent) / len(files)
    assert rate >= floor, (f"{family}: {len(files) - len(silent)} of {len(files)} files yield records "
                           f"({rate:.1%}, floor {floor:.0%}); without records: {', '.join(silent)}")
