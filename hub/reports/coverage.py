"""Which KPIs a site's feeds can answer: no data is not zero.

A site "carries" a kind of input when it has ever stored a record of it (any month, read from the
site grain of the rollups): charges, remittances, referrals, slots, appointments, visits (appointments
or encounters), imported costs. A KPI needs every kind it reads (``Kpi.source_kinds``; appointment and
encounter together mean visits of either kind; the patient index is no feed). For a site that lacks one,
the KPI is null with the reason ("no charge feed"), and the MSO total and site median leave the site out.
A site with no records at all is not listed: it has no rows to leave out.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hub.reports.tables import report_cells

# feed → (the rollup measures that count its records, the reason a site without it shows)
FEEDS = {
    "charge": (("charge_lines",), "no charge feed"),
    "remittance": (("remit_lines",), "no remittance feed"),
    "referral": (("referrals_received",), "no referral feed"),
    "slot": (("available_minutes",), "no slot feed"),
    "appointment": (("appts_scheduled",), "no appointment feed"),
    "visit": (("visits", "appts_scheduled"), "no visit feed"),
    "costs": (("cost_cells",), "no costs imported"),
}


def feeds_of(kpi: Any) -> list[str]:
    """The feeds a KPI's inputs come from."""
    kinds = [k for k in kpi.source_kinds if k != "patient"]
    if "encounter" in kinds:  # visits: a completed appointment or a finished encounter, either feed
        kinds = [k for k in kinds if k not in ("appointment", "encounter")] + ["visit"]
    return [k for k in kinds if k in FEEDS]


def carried(conn: sa.Connection) -> dict[str, set[str]]:
    """Practice → the feeds it has ever stored records of (practices with no records are absent)."""
    measures = sorted({m for names, _ in FEEDS.values() for m in names})
    c = report_cells.c
    q = (sa.select(c.practice, *[sa.func.sum(c[m]) for m in measures])
         .where(c.grain == "site").group_by(c.practice))
    out: dict[str, set[str]] = {}
    for row in conn.execute(q):
        totals = dict(zip(measures, (int(v or 0) for v in row[1:]), strict=True))
        if not any(totals.values()):
            continue
        out[row.practice] = {feed for feed, (names, _) in FEEDS.items() if any(totals[m] for m in names)}
    return out


def sites_left_out(carries: dict[str, set[str]], catalog: list[Any]) -> dict[str, dict[str, str]]:
    """KPI id → {site: why it has no figure}, for the KPIs some site cannot answer."""
    out: dict[str, dict[str, str]] = {}
    for kpi in catalog:
        needs = feeds_of(kpi)
        for site, feeds in sorted(carries.items()):
            missing = [FEEDS[f][1] for f in needs if f not in feeds]
            if missing:
                out.setdefault(kpi.id, {})[site] = ", ".join(missing)
    return out
