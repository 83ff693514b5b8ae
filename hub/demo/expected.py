"""The KPIs computed straight from the generator's facts: what the report engine must find.

Each figure is computed here independently of the store and the report engine, from the
records the generator made, by site (practice) and month. The tests compare these with
the engine's report; ``report_from_truth`` also makes a report-shaped document (the
contract of ``hub.reports.compute_report(...).to_dict()``) for the dashboard's fixture.

Months are the local month of the date that places a fact in time: an appointment's
start, a charge's service date, a remittance's payment date, a referral's receipt.
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


def _appointments(r: Records) -> Records:
    return [a for a in r if a["kind"] == "appointment"]


def visit_volume(r: Records) -> int:
    return sum(1 for a in _appointments(r) if a["status"] == "fulfilled")


def scheduled_appointments(r: Records) -> int:
    return len(_appointments(r))


def no_show_rate(r: Records) -> float | None:
    kept = [a for a in _appointments(r) if a["status"] in ("fulfilled", "noshow")]
    return _ratio(sum(1 for a in kept if a["status"] == "noshow"), len(kept))


def cancellation_rate(r: Records) -> float | None:
    appts = _appointments(r)
    return _ratio(sum(1 for a in appts if a["status"] == "cancelled"), len(appts))


def late_cancellation_rate(r: Records) -> float | None:
    appts = _appointments(r)
    late = sum(1 for a in appts if a["status"] == "cancelled" and a["cancelled_at"]
               and dt.datetime.fromisoformat(a["start"]) - dt.datetime.fromisoformat(a["cancelled_at"])
               < dt.timedelta(hours=24))
    return _ratio(late, len(appts))


def new_patient_rate(r: Records) -> float | None:
    done = [a for a in _appointments(r) if a["status"] == "fulfilled"]
    return _ratio(sum(1 for a in done if a["new_patient"]), len(done))


def utilization(r: Records) -> float | None:
    slots = [s for s in r if s["kind"] == "slot"]
    total = sum(s["duration_min"] for s in slots)
    busy = sum(s["duration_min"] for s in slots if s["status"] != "free")
    return _ratio(busy, total)


def booking_lead_time_days(r: Records) -> float | None:
    leads = [(dt.datetime.fromisoformat(a["start"]) - dt.datetime.fromisoformat(a["booked_at"])).total_seconds()
             / 86400 for a in _appointments(r) if a.get("booked_at")]
    return sum(leads) / len(leads) if leads else None


def gross_charges(r: Records) -> str:
    return _money(sum((Decimal(c["amount"]) for c in r if c["kind"] == "charge"), Decimal("0")))


def payments(r: Records) -> str:
    return _money(sum((Decimal(p["paid_amount"]) for p in r if p["kind"] == "remittance"), Decimal("0")))


def denial_rate(r: Records) -> float | None:
    remits = [p for p in r if p["kind"] == "remittance"]
    return _ratio(sum(1 for p in remits if p["denied"]), len(remits))


def referrals_received(r: Records) -> int:
    return sum(1 for x in r if x["kind"] == "referral")


def _month_of(record: dict[str, Any]) -> str | None:
    kind = record["kind"]
    value = {"appointment": "start", "slot": "start", "encounter": "start", "charge": "service_date",
             "remittance": "paid_on", "referral": "received_on"}.get(kind)
    return str(record[value])[:7] if value and record.get(value) else None


# id → (name, unit, higher_is_better, figure, numerator, denominator, source kinds)
KPIS: dict[str, tuple[str, str, bool, Callable[[Records], Any], str, str, tuple[str, ...]]] = {
    "visit_volume": ("Visit volume", "count", True, visit_volume, "fulfilled appointments", "", ("appointment",)),
    "scheduled_appointments": ("Scheduled appointments", "count", True, scheduled_appointments,
                               "appointments starting in the month", "", ("appointment",)),
    "no_show_rate": ("No-show rate", "ratio", False, no_show_rate, "no-shows", "fulfilled + no-shows",
                     ("appointment",)),
    "cancellation_rate": ("Cancellation rate", "ratio", False, cancellation_rate, "cancelled appointments",
                          "all appointments", ("appointment",)),
    "late_cancellation_rate": ("Late cancellation rate", "ratio", False, late_cancellation_rate,
                               "cancellations under 24 h before the start", "all appointments", ("appointment",)),
    "new_patient_rate": ("New patient share", "ratio", True, new_patient_rate, "fulfilled new-patient visits",
                         "fulfilled visits", ("appointment",)),
    "utilization": ("Schedule utilization", "ratio", True, utilization, "booked slot minutes",
                    "published slot minutes", ("slot",)),
    "booking_lead_time_days": ("Booking lead time", "days", False, booking_lead_time_days,
                               "days from booking to start, summed", "appointments", ("appointment",)),
    "gross_charges": ("Gross charges", "usd", True, gross_charges, "charge amounts by service month", "",
                      ("charge",)),
    "payments": ("Payments", "usd", True, payments, "paid amounts by payment month", "", ("remittance",)),
    "denial_rate": ("Denial rate", "ratio", False, denial_rate, "denied remittance lines", "remittance lines",
                    ("remittance",)),
    "referrals_received": ("Referrals received", "count", True, referrals_received, "referrals received", "",
                           ("referral",)),
}


def by_site_month(truth: Truth, kpis: tuple[str, ...] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """{(site, month): {kpi: figure}} for every month of the generated history."""
    months = truth.months()
    groups: dict[tuple[str, str], Records] = defaultdict(list)
    for site, records in truth.records.items():
        for record in records:
            month = _month_of(record)
            if month in months:
                groups[(site, month)].append(record)
    chosen = kpis or tuple(KPIS)
    return {key: {k: KPIS[k][3](recs) for k in chosen} for key, recs in groups.items()
            if any(r["kind"] == "appointment" for r in recs)}


def total_by_month(truth: Truth) -> dict[str, dict[str, Any]]:
    months = set(truth.months())
    groups: dict[str, Records] = defaultdict(list)
    for records in truth.records.values():
        for record in records:
            month = _month_of(record)
            if month in months:
                groups[month].append(record)
    return {month: {k: spec[3](recs) for k, spec in KPIS.items()} for month, recs in groups.items()}


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
