"""The KPIs computed straight from the generator's facts: what the report engine must find.

Each figure is computed here independently of the store and the report engine, from the
records the generator made, by site (practice) and month. The tests compare these with
the engine's report; ``report_from_truth`` also makes a report-shaped document (the
contract of ``hub.reports.compute_report(...).to_dict()``) for the dashboard's fixture.

The definitions follow the report catalog (``hub.reports.catalog``), written again here
from its words: months are the local month of an appointment's start, a charge's
service date (a remittance counts in its charge's service month), a referral's receipt.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from hub.demo.generator import Truth

Records = list[dict[str, Any]]


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _money(total: Decimal) -> str:
    return str(total.quantize(Decimal("0.01")))


SCHEDULED = ("booked", "arrived", "checked-in", "fulfilled", "noshow", "cancelled")
BOOKED = ("booked", "arrived", "checked-in", "fulfilled", "noshow")  # they hold their slot time


def _kind(r: Records, kind: str) -> Records:
    return [x for x in r if x["kind"] == kind]


def _scheduled(r: Records) -> Records:
    return [a for a in _kind(r, "appointment") if a["status"] in SCHEDULED]


def _visits(r: Records) -> Records:
    return [a for a in _kind(r, "appointment") if a["status"] == "fulfilled"]


def visit_volume(r: Records) -> int:
    return len(_visits(r))


def no_show_rate(r: Records) -> float | None:
    return _ratio(sum(1 for a in _scheduled(r) if a["status"] == "noshow"), len(_scheduled(r)))


def cancellation_rate(r: Records) -> float | None:
    return _ratio(sum(1 for a in _scheduled(r) if a["status"] == "cancelled"), len(_scheduled(r)))


def late_cancellation_rate(r: Records) -> float | None:
    late = sum(1 for a in _scheduled(r) if a["status"] == "cancelled" and a["cancelled_at"]
               and dt.datetime.fromisoformat(a["start"]) - dt.datetime.fromisoformat(a["cancelled_at"])
               < dt.timedelta(hours=24))
    return _ratio(late, len(_scheduled(r)))


def new_patient_share(r: Records) -> float | None:
    visits = _visits(r)
    return _ratio(sum(1 for a in visits if a.get("_new_in_line")), len(visits))


def schedule_utilization(r: Records) -> float | None:
    available = sum(s["duration_min"] for s in _kind(r, "slot") if s["status"] in ("free", "busy"))
    booked = sum(a["duration_min"] for a in _kind(r, "appointment") if a["status"] in BOOKED)
    return _ratio(booked, available) if available else None


def lead_time_days(r: Records) -> float | None:
    leads = [(dt.date.fromisoformat(a["start"][:10]) - dt.date.fromisoformat(a["booked_at"][:10])).days
             for a in _scheduled(r) if a.get("booked_at") and a["booked_at"] <= a["start"]]
    return float(statistics.median(leads)) if leads else None


def referrals_received(r: Records) -> int:
    return len(_kind(r, "referral"))


def gross_charges(r: Records) -> str:
    return _money(sum((Decimal(c["amount"]) for c in _kind(r, "charge")), Decimal("0")))


def payments(r: Records) -> str:
    return _money(sum((Decimal(p["paid_amount"]) for p in _kind(r, "remittance")), Decimal("0")))


def adjustments(r: Records) -> str:
    return _money(sum((Decimal(p["adjustment_amount"]) for p in _kind(r, "remittance")), Decimal("0")))


def denial_rate(r: Records) -> float | None:
    remits = _kind(r, "remittance")
    return _ratio(sum(1 for p in remits if p["denied"]), len(remits))


def charge_lag_days(r: Records) -> float | None:
    lags = [(dt.date.fromisoformat(c["posted_on"]) - dt.date.fromisoformat(c["service_date"])).days
            for c in _kind(r, "charge") if c.get("posted_on")]
    return sum(lags) / len(lags) if lags else None


def _payer_mix(financial_class: str) -> Callable[[Records], float | None]:
    def share(r: Records) -> float | None:
        charges = _kind(r, "charge")
        total = sum((Decimal(c["amount"]) for c in charges), Decimal("0"))
        part = sum((Decimal(c["amount"]) for c in charges if c["financial_class"] == financial_class), Decimal("0"))
        return float(part / total) if total else None
    return share


# Facts a feed type cannot carry to the store (yet): the report cannot know them, and says 0 or nothing.
FEED_GAPS: dict[tuple[str, str], str] = {
    ("hl7v2", "referrals_received"): "the HL7 v2 connector does not map REF^I12 referrals",
    ("csv", "referrals_received"): "the practice's CSV exports carry no referral list",
    ("hl7v2", "denial_rate"): "a DFT^P03 payment FT1 has no field that says the line was denied",
    ("fhir", "late_cancellation_rate"): "FHIR R4 Appointment has no cancellation time and the FHIR connector "
                                        "does not read the R5 cancellationDate extension the feed sends",
}


def _month_of(record: dict[str, Any], charges: dict[str, dict[str, Any]]) -> str | None:
    """The month a fact counts in; a remittance counts in its charge's service month."""
    kind = record["kind"]
    if kind == "remittance":
        charge = charges.get(record["charge_source_id"])
        return charge["service_date"][:7] if charge else None
    value = {"appointment": "start", "slot": "start", "encounter": "start", "charge": "service_date",
             "referral": "received_on"}.get(kind)
    return str(record[value])[:7] if value and record.get(value) else None


def _mark_new_patients(records: Records) -> None:
    """A visit is new when the patient had no visit in the same service line in the 3 years before."""
    latest: dict[tuple[str, str | None], tuple[dt.date, bool]] = {}  # last visit day, and was it new
    for a in sorted(_visits(records), key=lambda a: a["start"]):
        key = (a["patient_source_id"], a.get("service_line"))
        day = dt.date.fromisoformat(a["start"][:10])
        before = latest.get(key)
        if before is not None and before[0] == day:  # a second visit the same day: as new as the first
            new = before[1]
        else:
            new = before is None or (day - before[0]).days > 3 * 365
        a["_new_in_line"] = new
        latest[key] = (day, new)


# id (as in the report catalog) → (name, unit, higher_is_better, figure, numerator, denominator, source kinds)
KPIS: dict[str, tuple[str, str, bool, Callable[[Records], Any], str, str, tuple[str, ...]]] = {
    "visit_volume": ("Visit volume", "count", True, visit_volume, "fulfilled appointments", "", ("appointment",)),
    "new_patient_share": ("New-patient share", "ratio", True, new_patient_share, "new-patient visits", "visits",
                          ("appointment",)),
    "no_show_rate": ("No-show rate", "ratio", False, no_show_rate, "no-shows", "scheduled appointments",
                     ("appointment",)),
    "cancellation_rate": ("Cancellation rate", "ratio", False, cancellation_rate, "cancelled appointments",
                          "scheduled appointments", ("appointment",)),
    "late_cancellation_rate": ("Late cancellation rate", "ratio", False, late_cancellation_rate,
                               "cancellations under 24 h before the start", "scheduled appointments",
                               ("appointment",)),
    "schedule_utilization": ("Schedule utilization", "ratio", True, schedule_utilization, "booked minutes",
                             "available slot minutes", ("appointment", "slot")),
    "lead_time_days": ("Lead time (median)", "days", False, lead_time_days, "days from booking to start", "",
                       ("appointment",)),
    "referrals_received": ("Referrals received", "count", True, referrals_received, "referrals received", "",
                           ("referral",)),
    "gross_charges": ("Gross charges", "usd", True, gross_charges, "charge amounts by service month", "",
                      ("charge",)),
    "payments": ("Payments", "usd", True, payments, "payments by the charge's service month", "",
                 ("remittance", "charge")),
    "adjustments": ("Adjustments", "usd", False, adjustments, "adjustments by the charge's service month", "",
                    ("remittance", "charge")),
    "denial_rate": ("Denial rate", "ratio", False, denial_rate, "denied remittance lines", "remittance lines",
                    ("remittance", "charge")),
    "charge_lag_days": ("Charge lag", "days", False, charge_lag_days, "days from service to posting", "charges",
                        ("charge",)),
    **{f"payer_mix_{fc}": (f"Payer mix: {fc.replace('_', ' ')}", "ratio", True, _payer_mix(fc),
                           f"gross charges with financial class {fc}", "gross charges", ("charge",))
       for fc in ("commercial", "medicare", "medicaid", "self_pay", "other")},
}


def _by_site(truth: Truth, period_of: Callable[[dict[str, Any], dict[str, dict[str, Any]]], str | None],
             kpis: tuple[str, ...] | None) -> dict[tuple[str, str], dict[str, Any]]:
    """{(site, period): {kpi: figure}}; ``period_of(record, charges)`` names a record's period, or None."""
    groups: dict[tuple[str, str], Records] = defaultdict(list)
    for site, records in truth.records.items():
        _mark_new_patients(records)
        charges = {c["source_id"]: c for c in _kind(records, "charge")}
        for record in records:
            period = period_of(record, charges)
            if period is not None:
                groups[(site, period)].append(record)
    chosen = kpis or tuple(KPIS)
    return {key: {k: KPIS[k][3](recs) for k in chosen} for key, recs in groups.items()
            if any(r["kind"] == "appointment" for r in recs)}


def by_site_month(truth: Truth, kpis: tuple[str, ...] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """{(site, month): {kpi: figure}} for every month of the generated history."""
    months = set(truth.months())

    def month(record: dict[str, Any], charges: dict[str, dict[str, Any]]) -> str | None:
        found = _month_of(record, charges)
        return found if found in months else None

    return _by_site(truth, month, kpis)


def _day_of(record: dict[str, Any], charges: dict[str, dict[str, Any]]) -> dt.date | None:
    """The day a fact counts on; a remittance counts on its charge's service date."""
    if record["kind"] == "remittance":
        charge = charges.get(record["charge_source_id"])
        return dt.date.fromisoformat(str(charge["service_date"])[:10]) if charge else None
    value = {"appointment": "start", "slot": "start", "encounter": "start", "charge": "service_date",
             "referral": "received_on"}.get(record["kind"])
    return dt.date.fromisoformat(str(record[value])[:10]) if value and record.get(value) else None


def by_site_week(truth: Truth, kpis: tuple[str, ...] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """{(site, ISO week "2026-W09"): {kpi: figure}} for the weeks wholly inside the generated history."""

    def week(record: dict[str, Any], charges: dict[str, dict[str, Any]]) -> str | None:
        day = _day_of(record, charges)
        if day is None:
            return None
        monday = day - dt.timedelta(days=day.weekday())
        if not (truth.start <= monday and monday + dt.timedelta(days=7) <= truth.end):
            return None
        year, number, _ = day.isocalendar()
        return f"{year}-W{number:02d}"

    return _by_site(truth, week, kpis)


def total_by_month(truth: Truth) -> dict[str, dict[str, Any]]:
    months = set(truth.months())
    groups: dict[str, Records] = defaultdict(list)
    for records in truth.records.values():
        _mark_new_patients(records)
        charges = {c["source_id"]: c for c in _kind(records, "charge")}
        for record in records:
            month = _month_of(record, charges)
            if month in months:
                groups[month].append(record)
    totals = {month: {k: spec[3](recs) for k, spec in KPIS.items()} for month, recs in groups.items()}
    # utilization of the MSO: the sites that publish their schedule, the booked minutes of those sites only
    for month, recs in groups.items():
        with_slots = {r["practice"] for r in recs if r["kind"] == "slot"}
        totals[month]["schedule_utilization"] = schedule_utilization(
            [r for r in recs if r["practice"] in with_slots])
    return totals


def report_from_truth(truth: Truth) -> dict[str, Any]:
    """A document of the report contract's shape, figures taken from the facts."""
    per_site = by_site_month(truth)
    rows = [{"slice": {"site": site, "month": month}, "values": values}
            for (site, month), values in sorted(per_site.items())]
    totals = total_by_month(truth)
    medians = []
    for month in truth.months():
        values: dict[str, Any] = {}
        for kpi, spec in KPIS.items():
            figures = [v[kpi] for (_, m), v in per_site.items() if m == month and v[kpi] is not None]
            if not figures:
                values[kpi] = None
            elif spec[1] == "usd":
                values[kpi] = _money(Decimal(statistics.median(Decimal(f) for f in figures)))
            else:
                values[kpi] = statistics.median(figures)
        medians.append({"slice": {"month": month}, "values": values})
    return {
        "generated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "from": truth.start.isoformat(), "to": (truth.end - dt.timedelta(days=1)).isoformat(),
        "by": ["site", "month"],
        "definitions": [{"id": kpi, "name": s[0], "unit": s[1], "numerator": s[4], "denominator": s[5] or None,
                         "formula": f"{s[4]} / {s[5]}" if s[5] else s[4], "source_kinds": list(s[6]),
                         "source": None, "higher_is_better": s[2]} for kpi, s in KPIS.items()],
        "rows": rows,
        "total": [{"slice": {"month": m}, "values": totals[m]} for m in truth.months()],
        "site_median": medians,
        "sites": [{"slug": p.slug, "name": p.name, "status": p.status} for p in truth.practices],
    }
