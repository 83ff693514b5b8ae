"""Each demo practice's feed files, written by the connector of its feed, and the MSO's costs.

The demo knows the story (who sends what, on which clock, in which order); the wire formats are the
connectors' (``Connector.render``): ``hl7v2`` writes HL7 v2.5.1 batches (SIU, REF, DFT), ``fhir``
one transaction Bundle per day, ``csv`` monthly exports in the columns of the practice mapping
(``mappings/examples/fishers-pt.yaml``). Each file lands under ``<practice>/``. A feed carries what
the source system knows: the source codes, never the MSO's mapped values, which come from the
practice mapping at ingestion.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hub.connector import Rendered, RenderOptions
from hub.demo.generator import PracticeSpec, Truth
from hub.plugins import ConnectorRegistry


def render_options(spec: PracticeSpec) -> RenderOptions:
    """How the practice's systems write their feed: its clock, its way with times, its sender names."""
    settings: dict[str, Any] = {"namespace": f"urn:demo:{spec.slug}"}
    if spec.system:
        settings["sending_application"] = spec.system
    return RenderOptions(practice=spec.slug, timezone=spec.timezone, times=spec.feed_times,
                         shuffled=spec.backfill_shuffled, settings=settings)


def feed_files(truth: Truth, spec: PracticeSpec, connectors: ConnectorRegistry) -> list[Rendered]:
    """The files the practice sends, named ``<practice>/...``, as its feed's connector writes them; a
    practice whose payments arrive otherwise (``remittance_feed``: 835s from its clearinghouse) gets
    its remittances from that connector, in payment order (a clearinghouse sends no backfill)."""
    records, options = truth.records[spec.slug], render_options(spec)
    if not spec.remittance_feed:
        rendered = connectors.get(spec.feed).render(records, options=options)
    else:
        rendered = connectors.get(spec.feed).render([r for r in records if r["kind"] != "remittance"],
                                                    options=options)
        rendered += connectors.get(spec.remittance_feed).render(records, options=replace(options, shuffled=False))
    return [Rendered(f"{spec.slug}/{r.name}", r.data) for r in rendered]


def costs_csv(truth: Truth) -> str:
    """The costs the MSO's finance team imports (``hub costs import``), as that command's CSV."""
    lines = ["practice,service_line,month,cost"]
    lines += [f"{c['practice']},{c['service_line']},{c['month']},{c['cost']}" for c in truth.costs]
    return "\n".join(lines) + "\n"
