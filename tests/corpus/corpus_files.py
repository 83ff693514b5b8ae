"""The corpus files the corpus tests read, and one run of each through ``hub normalize``.

Every file of ``../shared/corpus``'s data folders is run once per test session, in this process: through
``normalize_payload`` (the structured results) and through the ``hub normalize`` command with the same
plugins (what a user sees: exit code, stdout, stderr). Both are kept in ``outcome``'s cache.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from click.testing import CliRunner

from hub.connector import Tally
from hub.errors import HubError
from hub.pipeline.normalize import Normalized, normalize_payload
from tests.conftest import CORPUS

HL7V2_FOLDERS = ("hl7v2", "real/hl7v2")
FHIR_FOLDERS = ("fhir", "real/fhir")
X12_FOLDERS = ("x12",)
FOLDERS = (*HL7V2_FOLDERS, *FHIR_FOLDERS, *X12_FOLDERS)
MISSING = "(corpus missing)"  # the one parameter when the corpus is not there (the test then skips or fails)


def files_in(*folders: str) -> list[str]:
    """The files of ``folders`` as paths relative to the corpus (``real/hl7v2/x.hl7``), sorted."""
    out: list[str] = []
    for folder in folders:
        path = CORPUS / folder
        if path.is_dir():
            out.extend(f"{folder}/{p.name}" for p in sorted(path.iterdir()) if p.is_file())
    return out


def corpus_params(*folders: str) -> list[str]:
    return files_in(*folders) or [MISSING]


@functools.cache
def plugins() -> Any:
    from hub.plugins import load_plugins

    return load_plugins()


@dataclass
class Outcome:
    """One corpus file through the pipeline and through ``hub normalize``."""

    rel: str
    results: list[Normalized] = field(default_factory=list)
    refused: HubError | None = None  # the payload as a whole was not taken (no connector recognised it)
    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""

    @property
    def records(self) -> list[dict[str, Any]]:
        return [rec for r in self.results for rec in r.records]

    @property
    def errors(self) -> list[HubError]:
        found = [r.error for r in self.results if r.error is not None]
        return [self.refused, *found] if self.refused is not None else found

    @property
    def tally(self) -> Tally:
        total = Tally()
        for r in self.results:
            total.add(r.tally.as_dict())
        return total

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [rec for rec in self.records if rec["kind"] == kind]


@functools.cache
def cli_group() -> Any:
    from hub.cli import _build_cli

    return _build_cli()


@functools.cache
def outcome(rel: str) -> Outcome:
    from hub.commands.base import State

    path = CORPUS / rel
    data = path.read_bytes()
    out = Outcome(rel)
    try:
        out.results = normalize_payload(plugins(), data, practice="corpus", origin=rel)
    except HubError as exc:  # no connector recognises the payload
        out.refused = exc
    result = CliRunner().invoke(cli_group(), ["normalize", "--practice", "corpus", str(path)],
                                obj=State(plugins=plugins()))
    out.exit_code, out.stdout, out.stderr = result.exit_code, result.stdout, result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        out.stderr += f"\nTraceback: {type(result.exception).__name__}: {result.exception}"
    return out

