"""Drill-down: the records behind one KPI figure of one site and month.

A count or ratio KPI (and a money sum) is made of rollup measures; each measure is the sum
of a value over the rows of its source where a predicate holds (``rollups.measure_sources``).
The drill-down lists exactly those rows, selected by the same SQL the rollups sum, for one
(site, month) cell and optionally one provider and service line, each with the record it is
(kind, practice, source id), the fields the formula reads, its share of a money or minutes
figure, and ``messages``: the stored messages it came from (``lineage``).

Which measures a KPI reads, and whether they are its numerator or its denominator, comes from
the KPI itself: its ``compute`` is run once on a probe that notes the figure helpers it calls
(``ratio(num, den)``, ``usd(m)``, ...). A KPI whose figure is no such sum of records (a median,
an A/R balance, distinct patients, imported costs) is refused, saying what it is.

The answer is patient-level data (ids of patients and records, dates); the callers audit it.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from hub.errors import NotFound, ValidationError
from hub.model.tables import practices
from hub.reports.attribution import UNATTRIBUTED, charge_service_line_from
from hub.reports.catalog import BUILTIN_KPIS, Kpi
from hub.reports.coverage import carried, sites_left_out
from hub.reports.figures import Figures, money
from hub.reports.rollups import Measure, Source, Sql, _params, _text, measure_sources
from hub.store.engine import fetch_by_keys

MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
FIELD_LIMIT = 255  # a dimension value longer than any stored one is a mistake, not a query

# the fields each source's records show (beside kind, practice, source_id): what the formulas read, and ids.
# Never a name, birth date or other demographic: patient_source_id is the source system's id.
FIELDS: dict[str, dict[str, str]] = {
    "visits": {"visit_date": "v.visit_date", "provider": "v.provider", "location": "v.location",
               "service_line": "v.service_line", "visit_category": "v.visit_category", "is_new": "v.is_new",
               "converted": "v.converted",
               "patient_source_id": "CASE WHEN v.kind = 'appointment' THEN (SELECT x.patient_source_id FROM "
                                    "appointments x WHERE x.practice = v.practice AND x.source_id = v.source_id) "
                                    "ELSE (SELECT x.patient_source_id FROM encounters x WHERE x.practice = "
                                    "v.practice AND x.source_id = v.source_id) END"},
    "appointments": {"start": "a.start", "status": "a.status", "cancelled_at": "a.cancelled_at",
                     "booked_at": "a.booked_at", "duration_min": "a.duration_min",
                     "provider": "a.provider_source_id", "location": "a.location_source_id",
                     "service_line": "a.service_line", "visit_category": "a.visit_category",
                     "patient_source_id": "a.patient_source_id", "referral_source_id": "a.referral_source_id"},
    "slots": {"start": "s.start", "status": "s.status", "duration_min": "s.duration_min",
              "provider": "s.provider_source_id", "location": "s.location_source_id", "service_line": "s.service_line"},
    "charges": {"service_date": "c.service_date", "posted_on": "c.posted_on", "charge_amount": "c.amount",
                "financial_class": "c.financial_class", "procedure_code": "c.procedure_code",
                "provider": "c.provider_source_id", "location": "c.location_source_id",
                "service_line": "c.service_line", "claim_id": "c.claim_id",
                "patient_source_id": "c.patient_source_id"},
    "remittances": {"charge_source_id": "r.charge_source_id", "service_date": "c.service_date",
                    "charge_amount": "c.amount", "paid_on": "r.paid_on", "paid_amount": "r.paid_amount",
                    "adjustment_amount": "r.adjustment_amount", "denied": "r.denied",
                    "financial_class": "c.financial_class", "provider": "c.provider_source_id",
                    "location": "c.location_source_id", "service_line": "c.service_line",
                    "patient_source_id": "c.patient_source_id"},
    "referrals": {"received_on": "f.received_on", "service_line": "f.service_line",
                  "first_scheduled": "f.first_scheduled", "first_attended": "f.first_attended",
                  "patient_source_id": "f.patient_source_id"},
}
MONEY_FIELDS = {"charge_amount", "paid_amount", "adjustment_amount"}  # whole cents in the store
BOOL_FIELDS = {"is_new", "converted", "denied"}  # SQLite answers 0/1

# what a figure is when it is no sum of records: the probe's helper → the words of the refusal
NOT_RECORDS = {
    "median": "a median of days",
    "retention": "a share of distinct patients seen over the 12 months before the period",
    "ar": "an A/R balance at the end of the period",
    "costs": "a figure of imported costs",
}


class NoDrillDown(ValidationError):
    """The KPI's figure is not a count, ratio or sum of records."""


@dataclass(frozen=True)
class Shape:
    """Which measures make a KPI's numerator and denominator, each with its sign."""

    numerator: tuple[tuple[str, int], ...]
    denominator: tuple[tuple[str, int], ...] | None


class _Probe(Figures):
    """A ``Figures`` that notes which helper a KPI's ``compute`` calls, with which measures."""

    def __init__(self) -> None:
        super().__init__({})
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def _note(self, helper: str, *measures: str) -> None:
        self.calls.append((helper, measures))

    def count(self, m: str) -> int:
        self._note("count", m)
        return 0

    def ratio(self, num: str, den: str) -> float | None:
        self._note("ratio", num, den)
        return None

    def usd(self, m: str) -> str:
        self._note("usd", m)
        return "0.00"

    def usd_per(self, num: str, den: str) -> str | None:
        self._note("usd_per", num, den)
        return None

    def mean(self, num: str, den: str) -> float | None:
        self._note("mean", num, den)
        return None

    def rvus_per(self, num: str, den: str) -> float | None:
        self._note("rvus_per", num, den)
        return None

    def median(self, metric: str) -> float | None:
        self._note("median", metric)
        return None

    def retention(self) -> float | None:
        self._note("retention")
        return None

    def net_collection(self) -> float | None:
        self._note("net_collection")
        return None

    def days_in_ar(self) -> float | None:
        self._note("ar")
        return None

    def ar_over_90(self) -> float | None:
        self._note("ar")
        return None

    def costs(self) -> str | None:
        self._note("costs")
        return None

    def margin(self) -> str | None:
        self._note("costs")
        return None

    def margin_rate(self) -> float | None:
        self._note("costs")
        return None


def shape_of(kpi: Kpi, sources: dict[str, Source]) -> Shape:
    """The measures of a KPI's figure, or ``NoDrillDown`` saying what the figure is instead."""
    probe = _Probe()
    try:
        kpi.compute(probe)
    except Exception:  # a plugin's formula that does more than combine the helpers
        probe.calls = [("other", ())]
    refuse = f"KPI {kpi.id} has no record-level drill-down"
    if len(probe.calls) != 1:
        raise NoDrillDown(f"{refuse} (its formula is not a single count, ratio or sum of records)")
    helper, measures = probe.calls[0]
    if helper in NOT_RECORDS:
        raise NoDrillDown(f"{refuse} (it is {NOT_RECORDS[helper]})")
    if helper == "net_collection":
        shape = Shape((("payments_cents", 1),), (("charges_cents", 1), ("contractual_cents", -1)))
    elif helper in ("count", "usd"):
        shape = Shape(((measures[0], 1),), None)
    elif helper in ("ratio", "usd_per", "mean", "rvus_per"):
        shape = Shape(((measures[0], 1),), ((measures[1], 1),))
    else:
        raise NoDrillDown(f"{refuse} (its formula is not a single count, ratio or sum of records)")
    for name, _ in (*shape.numerator, *(shape.denominator or ())):
        source = sources.get(name)
        if source is None or source.kind is None:
            raise NoDrillDown(f"{refuse} (it is {NOT_RECORDS['costs']})" if source is not None
                              else f"{refuse} (its measure {name} is not summed from records)")
    return shape


@dataclass
class DrillDown:
    kpi: str
    slice: dict[str, str | None]
    value: Any
    numerator: list[dict[str, Any]] = field(default_factory=list)
    denominator: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kpi": self.kpi, "slice": self.slice, "value": self.value, "numerator": self.numerator,
                "denominator": self.denominator}

    @property
    def record_count(self) -> int:
        return len(self.numerator) + len(self.denominator or ())


def find_kpi(kpi_id: str, plugins: Any = None) -> Kpi:
    registry = list(plugins.kpis) if plugins is not None else []
    known = {k.id: k for k in (registry or BUILTIN_KPIS)}
    if kpi_id not in known:
        raise NotFound(f"unknown KPI {kpi_id[:60]!r} (hub report kpis lists the definitions)")
    return known[kpi_id]


def drill_down(engine: sa.Engine, kpi_id: str, *, site: str, month: str, provider: str | None = None,
               service_line: str | None = None, plugins: Any = None) -> DrillDown:
    """The records behind ``kpi_id`` for one site (practice slug) and month (``YYYY-MM``), optionally one
    provider and service line (the report's dimension values)."""
    kpi = find_kpi(kpi_id, plugins)
    if not MONTH.match(month or ""):
        raise ValidationError(f"must be YYYY-MM, not {str(month)[:20]!r}", location="month")
    for name, value in (("provider", provider), ("service_line", service_line)):
        if value is not None and (not value or len(value) > FIELD_LIMIT):
            raise ValidationError(f"must be 1 to {FIELD_LIMIT} characters", location=name)
    with engine.connect() as conn:
        sql = Sql(conn.dialect.name)
        sources = {m: s for s in measure_sources(sql) for m in s.measures}
        shape = shape_of(kpi, sources)
        if conn.execute(sa.select(practices.c.slug).where(practices.c.slug == site)).first() is None:
            raise NotFound(f"no site {site[:64]!r} (hub practice list names them)")
        wanted = [m for m, _ in (*shape.numerator, *(shape.denominator or ()))]
        rows = _rows(conn, sql, sources, wanted, site, month, provider, service_line)
        _attach_messages(conn, site, [r for rs in rows.values() for r in rs])
        # as the report: a site whose feeds do not carry the KPI's inputs has no figure (its records still list)
        no_data = sites_left_out(carried(conn, plugins), [kpi]).get(kpi.id, {}).get(site)
    sums: dict[str, int] = {m: sum(r["_value"] for r in rows[m]) for m in wanted}
    slice_: dict[str, str | None] = {"site": site, "month": month}
    if provider is not None:
        slice_["provider"] = provider
    if service_line is not None:
        slice_["service_line"] = service_line

    def listed(parts: tuple[tuple[str, int], ...]) -> list[dict[str, Any]]:
        out = []
        for m, sign in parts:
            for row in rows[m]:
                if sign < 0 and not row["_value"]:
                    continue  # a line that takes nothing off (no contractual adjustment) is not behind the figure
                out.append(_shown(row, site, m, sign))
        return out

    return DrillDown(kpi.id, slice_, None if no_data else kpi.compute(Figures(sums)), listed(shape.numerator),
                     listed(shape.denominator) if shape.denominator is not None else None)


def _rows(conn: sa.Connection, sql: Sql, sources: dict[str, Source], wanted: list[str], site: str, month: str,
          provider: str | None, service_line: str | None) -> dict[str, list[dict[str, Any]]]:
    """The rows of each wanted measure (one query per source), as dicts with ``_value`` (its share)."""
    by_source: dict[str, list[str]] = defaultdict(list)
    for m in dict.fromkeys(wanted):
        by_source[sources[m].name].append(m)
    # the report names the records without a service line "unattributed"; the rollups keep them under ''
    line = "" if service_line == UNATTRIBUTED else service_line
    params: dict[str, Any] = {**_params(site, [month]), "provider": provider, "service_line": line,
                              "site_provider": f"{site}/{provider}"}
    out: dict[str, list[dict[str, Any]]] = {}
    for measures in by_source.values():
        source = sources[measures[0]]
        fields = FIELDS[source.name]
        if source.name in ("charges", "remittances"):  # the line the charge is counted under, and from what
            fields = {**fields, "service_line": source.dims["service_line"],
                      "service_line_from": charge_service_line_from("c")}
        where = [source.where] if source.where else []
        if provider is not None:  # the report's provider key (an NPI, or site/local id), or the site's own id
            where.append(_provider_filter(source))
        if service_line is not None:
            where.append(f"{source.dims['service_line']} = :service_line")
        where.append(f"({' OR '.join(_selects(source.measures[m]) for m in measures)})")
        columns = [f"{source.kind} AS kind", f"{source.source_id} AS source_id",
                   *(f"{expr} AS {name}" for name, expr in fields.items()),
                   *(f"CASE WHEN {_selects(source.measures[m])} THEN 1 ELSE 0 END AS in_{i}"
                     for i, m in enumerate(measures)),
                   *(f"{source.measures[m].value} AS value_{i}" for i, m in enumerate(measures))]
        query = (f"SELECT {', '.join(columns)} FROM {source.table} WHERE {' AND '.join(where)} "
                 f"ORDER BY {source.source_id}")
        found = [dict(r._mapping) for r in conn.execute(_text(query), params)]
        for i, m in enumerate(measures):
            out[m] = [{**{k: v for k, v in r.items() if not k.startswith(("in_", "value_"))},
                       "_value": int(r[f"value_{i}"] or 0)} for r in found if r[f"in_{i}"]]
    return out


# a visit's provider as its practice names it (report_visits keeps the report's key only)
_VISIT_LOCAL_PROVIDER = ("CASE WHEN v.kind = 'appointment' THEN (SELECT x.provider_source_id FROM appointments x "
                         "WHERE x.practice = v.practice AND x.source_id = v.source_id) "
                         "ELSE (SELECT x.provider_source_id FROM encounters x "
                         "WHERE x.practice = v.practice AND x.source_id = v.source_id) END")


def _provider_filter(source: Source) -> str:
    """SQL: the source's row is the provider asked for: by the report's key (an NPI, or ``site/local-id``),
    or by the site's own id, also when the key is an NPI found on the record or the site's provider record."""
    key = source.dims["provider"]
    if key == "''":  # the source names no provider (referrals): no row is anyone's
        return "1 = 0"
    alias = source.dims["practice"].split(".", 1)[0]
    local = _VISIT_LOCAL_PROVIDER if source.name == "visits" else f"{alias}.provider_source_id"
    return f"({key} IN (:provider, :site_provider) OR {local} = :provider)"


def _selects(measure: Measure) -> str:
    return f"({measure.when})" if measure.when else "1 = 1"


def _attach_messages(conn: sa.Connection, practice: str, rows: list[dict[str, Any]]) -> None:
    """Each row's ``messages``: the ids of the stored messages its record came from, oldest first."""
    by_kind: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        by_kind[r["kind"]].add(r["source_id"])
    found: dict[tuple[str, str], list[int]] = defaultdict(list)
    for kind, ids in by_kind.items():
        for source_id, message_id in fetch_by_keys(
                conn, "SELECT source_id, message_id FROM lineage WHERE practice = :p AND kind = :k AND source_id "
                      "IN :keys", ids, p=practice, k=kind):
            found[(kind, source_id)].append(int(message_id))
    for r in rows:
        r["messages"] = sorted(found.get((r["kind"], r["source_id"]), ()))


def _shown(row: dict[str, Any], practice: str, measure: str, sign: int) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": row["kind"], "practice": practice, "source_id": row["source_id"]}
    for name, value in row.items():
        if name in ("kind", "source_id", "_value", "messages"):
            continue
        if name in MONEY_FIELDS and value is not None:
            value = money(int(value))
        elif name in BOOL_FIELDS and value is not None:
            value = bool(value)
        elif value is not None and not isinstance(value, (str, int, float)):
            value = value.isoformat() if hasattr(value, "isoformat") else str(value)
        out[name] = value
    out["measure"] = measure
    share = sign * row["_value"]
    if measure.endswith("_cents"):
        out["amount"] = money(share)
    elif measure.endswith(("_minutes", "_days")):
        out[measure.rsplit("_", 1)[1]] = share
    elif measure == "work_rvu_milli":  # the line's work RVUs (units times its RVU row), hub.reports.rvus
        out["work_rvus"] = share / 1000
    out["messages"] = row["messages"]
    return out


CSV_LEAD = ("part", "measure", "kind", "practice", "source_id")


def to_csv(result: DrillDown) -> str:
    """One line per record: its part (numerator, denominator), then its fields; messages space-separated."""
    lines = [("numerator", r) for r in result.numerator] + [("denominator", r) for r in result.denominator or ()]
    names: dict[str, None] = dict.fromkeys(CSV_LEAD)
    for _, r in lines:
        names.update(dict.fromkeys(r))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(list(names))
    for part, r in lines:
        cells = {**r, "part": part, "messages": " ".join(str(m) for m in r.get("messages", ()))}
        writer.writerow(["" if cells.get(n) is None else _cell(cells.get(n)) for n in names])
    return out.getvalue()


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not _number(text) else text  # no spreadsheet formulas


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
