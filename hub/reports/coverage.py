"""Which KPIs a site's feeds can answer: no data is not zero.

A site "carries" a kind of input when it has ever stored a record of it (any month, read from the
site grain of the rollups): charges, remittances, referrals, slots, appointments, visits (appointments
or encounters), imported costs, work RVUs (charge lines an imported RVU row prices). A KPI needs every
kind it reads (``Kpi.source_kinds``; appointment and encounter together mean visits of either kind; the
patient index is no feed). For a site that lacks one,
the KPI is null with the reason ("no charge feed"), and the MSO total and site median leave the site out.
A site with no records at all is not listed: it has no rows to leave out.

Some feeds carry a kind but not every field a KPI needs: an HL7 v2 payment posting (DFT) is a remittance
that never says whether the line was denied. A KPI names such fields (``Kpi.source_fields``); a site none of
whose records of that kind carries the field (it is null on every one: connectors leave out what their
format has no place for, ``Connector.cannot_carry``) has no figure, with the reason, named after the
connector that says so when one of the site's feeds does. A site that carries the field on some of its
records (a practice that moved from DFT postings to 835s) keeps its figure.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hub.errors import HubError
from hub.model.tables import RECORD_TABLES, messages
from hub.plugins import load_plugins
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
    # work RVUs: a site none of whose charge lines an imported RVU row prices (hub.reports.rvus)
    "rvus": (("rvu_lines",), "no RVU row for its procedure codes (hub rvu import)"),
}

# "kind.field" a KPI may need beyond its kind → the reason a site whose records never carry it shows (when no
# connector of the site's feeds says why in its own words, ``Connector.cannot_carry``)
FIELDS = {
    "remittance.denied": "no denial data: its remittances do not say which lines were denied",
}


class Carries(dict[str, set[str]]):
    """Practice → the feeds it has stored records of and the ``FIELDS`` some of its records carry; ``said``:
    (practice, field) → what the connectors of its feeds say of a field none of its records carries."""

    def __init__(self) -> None:
        super().__init__()
        self.said: dict[tuple[str, str], str] = {}


def feeds_of(kpi: Any) -> list[str]:
    """The feeds a KPI's inputs come from, then the fields it needs of them."""
    kinds = [k for k in kpi.source_kinds if k != "patient"]
    if "encounter" in kinds:  # visits: a completed appointment or a finished encounter, either feed
        kinds = [k for k in kinds if k not in ("appointment", "encounter")] + ["visit"]
    return [k for k in kinds if k in FEEDS] + [f for f in getattr(kpi, "source_fields", ()) if f in FIELDS]


def carried(conn: sa.Connection, plugins: Any = None) -> Carries:
    """Practice → the feeds it has ever stored records of, and the ``FIELDS`` some of them carry (practices
    with no records are absent). What the connectors the practice's messages came through say of a field
    none of its records carries goes into ``said`` (``plugins``: the hub's, loaded when needed if not given)."""
    measures = sorted({m for names, _ in FEEDS.values() for m in names})
    c = report_cells.c
    q = (sa.select(c.practice, *[sa.func.sum(c[m]) for m in measures])
         .where(c.grain == "site").group_by(c.practice))
    out = Carries()
    for row in conn.execute(q):
        totals = dict(zip(measures, (int(v or 0) for v in row[1:]), strict=True))
        if not any(totals.values()):
            continue
        out[row.practice] = {feed for feed, (names, _) in FEEDS.items() if any(totals[m] for m in names)}
    for name in FIELDS:
        kind, column = name.split(".")
        table = RECORD_TABLES[kind]
        for practice, feeds in out.items():
            if kind not in feeds:
                continue  # "no <kind> feed" says it already
            # one record that carries it is enough: the (practice, ...) index finds it at once where there is one
            found = conn.execute(sa.select(sa.literal(1)).where(table.c.practice == practice,
                                                                table.c[column].is_not(None)).limit(1)).first()
            if found is not None:
                feeds.add(name)
            else:
                plugins = plugins or load_plugins()
                if why := _cannot_carry(conn, plugins.connectors, practice, name):
                    out.said[(practice, name)] = why
    return out


def _cannot_carry(conn: sa.Connection, connectors: Any, practice: str, name: str) -> str:
    """What the connectors the practice's messages came through say of a field they cannot carry."""
    used = conn.execute(sa.select(messages.c.connector).where(messages.c.practice == practice).distinct())
    said = []
    for connector in sorted(set(used.scalars())):
        try:
            why = connectors.get(connector).cannot_carry.get(name)
        except HubError:  # a connector no longer installed says nothing
            continue
        if why:
            said.append(str(why))
    return "; ".join(said)


def sites_left_out(carries: dict[str, set[str]], catalog: list[Any]) -> dict[str, dict[str, str]]:
    """KPI id → {site: why it has no figure}, for the KPIs some site cannot answer."""
    said = getattr(carries, "said", {})
    out: dict[str, dict[str, str]] = {}
    for kpi in catalog:
        needs = feeds_of(kpi)
        for site, feeds in sorted(carries.items()):
            missing = [FEEDS[f][1] for f in needs if f in FEEDS and f not in feeds]
            if not missing:  # the fields of a kind it carries
                missing = [said.get((site, f)) or FIELDS[f] for f in needs if f in FIELDS and f not in feeds]
            if missing:
                out.setdefault(kpi.id, {})[site] = ", ".join(missing)
    return out
