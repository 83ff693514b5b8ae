"""``hub fhir pull`` without the command line, for the pull tests: the FHIR connector's poller,
scheduled by the core (``hub.pipeline.pull``), with a client the test chooses."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hub_fhir.pull import FhirClient, FhirPoller

from hub.connector import PullReport
from hub.pipeline.pull import run_poller
from hub.runtime import Runtime


def pull(runtime: Runtime, practice: str, base: str, *, since: str | None = None, types: Iterable[str] | None = None,
         config: Mapping[str, Any] | None = None, client: FhirClient | None = None) -> list[PullReport]:
    """Pull every type (or ``types``) from the FHIR server at ``base`` into ``practice``; one report per type."""
    poller = FhirPoller(base, config, client=client)
    return run_poller(runtime, practice, "fhir", poller, since=since, resource_types=list(types) if types else None)
