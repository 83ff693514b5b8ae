"""``hub fhir ...`` commands."""

from __future__ import annotations

import click


@click.group("fhir")
def fhir_group() -> None:
    """FHIR R4: pull from a practice's FHIR server."""
