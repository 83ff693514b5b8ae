"""A small synthetic MSO (no real patient data) and its KPIs computed independently in plain Python."""

from __future__ import annotations

import datetime as dt
import random
import statistics
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

SITES = ("derm-east", "derm-west", "skin-spa")
LINES = ("dermatology", "cosmetic_aesthetics")
MONTHS = ("2024-01", "2024-02", "2024-03", "2024-04", "2024-05")
TZ = "-05:00"


def _ts(day: dt.date, hour: int) -> str:
    return f"{day.isoformat()}T{hour:02d}:00:00{TZ}"


def build_records(seed: int = 7) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    records: list[dict[str, Any]] = []
    for site in SITES:
        for i in range(30):
            shared = i < 12  # the same person at several sites
            records.append({"kind": "patient", "practice": site, "source_id": f"P{i}",
                            "enterprise_id": f"E{i}" if shared or rnd.random() < 0.5 else None, "sex": "unknown"})
        for r in range(25):
            day = dt.date(2024, 1, 1) + dt.timedelta(days=rnd.randrange(0, 140))
            records.append({"kind": "referral", "practice": site, "source_id": f"R{r}",
                            "patient_source_id": f"P{rnd.randrange(30)}", "received_on": day,
                            "service_line": rnd.choice(LINES), "status": "active"})
        for n in range(1, 261):
            history = rnd.random() < 0.15
            day = (dt.date(2021, 6, 1) + dt.timedelta(days=rnd.randrange(0, 900)) if history
                   else dt.date(2024, 1, 1) + dt.timedelta(days=rnd.randrange(0, 150)))
            status = rnd.choices(["fulfilled", "noshow", "cancelled", "booked", "arrived", "entered-in-error"],
                                 [60, 8, 10, 10, 5, 2])[0]
            start = _ts(day, rnd.randrange(8, 17))
            appt = {"kind": "appointment", "practice": site, "source_id": f"A{n}",
                    "patient_source_id": f"P{rnd.randrange(30)}", "provider_source_id": f"DR{rnd.randrange(3)}",
                    "location_source_id": f"L{rnd.randrange(2)}", "start": start,
                    "duration_min": rnd.choice([15, 30, 45]), "service_line": rnd.choice(LINES),
                    "visit_category": rnd.choice(["consult", "procedure", "followup"]), "status": status,
                    "booked_at": _ts(day - dt.timedelta(days=rnd.randrange(0, 40)), 9) if rnd.random() < 0.9
                    else None}
            if status == "cancelled":
                hours = rnd.choice([2, 20, 30, 72])
                appt["cancelled_at"] = (dt.datetime.fromisoformat(start) - dt.timedelta(hours=hours)).isoformat()
            if rnd.random() < 0.2:
                appt["referral_source_id"] = f"R{rnd.randrange(25)}"
            records.append(appt)
            if status in ("fulfilled", "arrived"):
                cents = rnd.randrange(5000, 40000)
                posted = day + dt.timedelta(days=rnd.randrange(0, 9))
                fc = rnd.choice(["commercial", "medicare", "medicaid", "self_pay", None])
                records.append({"kind": "charge", "practice": site, "source_id": f"C{n}",
                                "patient_source_id": appt["patient_source_id"], "encounter_source_id": None,
                                "provider_source_id": appt["provider_source_id"],
                                "location_source_id": appt["location_source_id"], "service_date": day,
                                "posted_on": posted if rnd.random() < 0.95 else None,
                                "amount": Decimal(cents) / 100, "financial_class": fc,
                                "service_line": appt["service_line"]})
                if rnd.random() < 0.75:
                    denied = rnd.random() < 0.15
                    paid = Decimal(0) if denied else Decimal(rnd.randrange(0, cents)) / 100
                    co = Decimal(rnd.randrange(0, cents // 3)) / 100
                    pr = Decimal(rnd.randrange(0, 2000)) / 100
                    records.append({"kind": "remittance", "practice": site, "source_id": f"RM{n}",
                                    "charge_source_id": f"C{n}", "paid_amount": paid, "adjustment_amount": co + pr,
                                    "adjustments": [{"group": "CO", "reason": "45", "amount": str(co)},
                                                    {"group": "PR", "reason": "2", "amount": str(pr)}],
                                    "denied": denied, "paid_on": posted + dt.timedelta(days=rnd.randrange(5, 80))})
        for e in range(30):  # walk-ins recorded only as encounters, and encounters of appointments
            day = dt.date(2024, 1, 1) + dt.timedelta(days=rnd.randrange(0, 150))
            records.append({"kind": "encounter", "practice": site, "source_id": f"EN{e}",
                            "patient_source_id": f"P{rnd.randrange(30)}", "provider_source_id": f"DR{rnd.randrange(3)}",
                            "location_source_id": "L0", "start": _ts(day, 10), "status": rnd.choice(
                                ["finished", "finished", "cancelled"]), "service_line": rnd.choice(LINES),
                            "visit_category": rnd.choice(["consult", "procedure"]),
                            "appointment_source_id": f"A{rnd.randrange(1, 260)}" if e % 3 == 0 else None})
        for s in range(200):
            day = dt.date(2024, 1, 1) + dt.timedelta(days=rnd.randrange(0, 150))
            records.append({"kind": "slot", "practice": site, "source_id": f"S{s}",
                            "provider_source_id": f"DR{rnd.randrange(3)}", "location_source_id": f"L{rnd.randrange(2)}",
                            "service_line": rnd.choice(LINES), "start": _ts(day, 8), "duration_min": 30,
                            "status": rnd.choice(["free", "busy", "busy", "busy-unavailable"])})
    return records


def changes(records: list[dict[str, Any]], seed: int = 11) -> list[dict[str, Any]]:
    """A later batch: status changes, a reschedule to another month, a late enterprise link."""
    rnd = random.Random(seed)
    appts = [r for r in records if r["kind"] == "appointment" and r["start"] >= "2024"]
    out = []
    for r in rnd.sample(appts, 25):
        new = dict(r)
        new["status"] = {"booked": "fulfilled", "fulfilled": "noshow"}.get(r["status"], "fulfilled")
        new.pop("cancelled_at", None)
        out.append(new)
    moved = dict(appts[0])
    moved["start"] = moved["start"][:5] + "05-20" + moved["start"][10:]
    out.append(moved)
    patient = next(r for r in records if r["kind"] == "patient" and not r.get("enterprise_id"))
    out.append({**patient, "enterprise_id": "E1"})
    return out


# ------------------------------------------------------------------ the KPIs, independently
COMPLETED = {"fulfilled", "arrived", "checked-in"}
SCHEDULED = {"booked", "arrived", "checked-in", "fulfilled", "noshow", "cancelled"}
OCCUPYING = SCHEDULED - {"cancelled"}


def final_state(batches: list[list[dict[str, Any]]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    state: dict[tuple[str, str, str], dict[str, Any]] = {}
    for batch in batches:
        for r in batch:
            key = (r["kind"], r["practice"], r["source_id"])
            merged = dict(state.get(key, {}))
            merged.update({k: v for k, v in r.items() if v is not None})
            state[key] = merged
    return state


def _date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


def period_of(day: dt.date, kind: str = "month") -> str:
    """The name of the period a day falls in, as the report names it."""
    if kind == "quarter":
        return f"{day.year}-Q{(day.month - 1) // 3 + 1}"
    if kind == "year":
        return str(day.year)
    if kind == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return day.isoformat()[:7]


def period_bounds(name: str, kind: str) -> tuple[dt.date, dt.date, dt.date]:
    """(start of the look-back window, first day, day after the last day) of a named period: the window is
    the 12 months before the period (for a week, the 52 weeks before it)."""
    if kind == "week":
        first = dt.date.fromisocalendar(int(name[:4]), int(name[6:]), 1)
        return first - dt.timedelta(weeks=52), first, first + dt.timedelta(weeks=1)
    if kind == "year":
        first, months = dt.date(int(name), 1, 1), 12
    elif kind == "quarter":
        first, months = dt.date(int(name[:4]), 3 * int(name[-1]) - 2, 1), 3
    else:
        first, months = dt.date(int(name[:4]), int(name[5:7]), 1), 1
    i = first.year * 12 + first.month - 1 + months
    return first.replace(year=first.year - 1), first, dt.date(i // 12, i % 12 + 1, 1)


def expected(state: dict[tuple[str, str, str], dict[str, Any]], period: str = "month"
             ) -> dict[tuple[str, str], dict[str, Any]]:
    """KPI values by (site, period), computed straight from the records."""
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (kind, _, _), r in state.items():
        by_kind[kind].append(r)
    patients = {(p["practice"], p["source_id"]): p for p in by_kind["patient"]}
    appts = {(a["practice"], a["source_id"]): a for a in by_kind["appointment"]}

    def pkey(r: dict[str, Any]) -> str:
        p = patients.get((r["practice"], r.get("patient_source_id")))
        return (p or {}).get("enterprise_id") or f"{r['practice']}:{r.get('patient_source_id')}"

    visits = [r for r in by_kind["appointment"] if r["status"] in COMPLETED]
    visits += [e for e in by_kind["encounter"] if e.get("status") == "finished" and
               appts.get((e["practice"], e.get("appointment_source_id")), {}).get("status") not in COMPLETED]
    vdays = [(v, pkey(v), _date(v["start"])) for v in visits]
    per: dict[tuple[str, str], dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    lead: dict[tuple[str, str], list[int]] = defaultdict(list)
    for v, key, day in vdays:
        cell = per[(v["practice"], period_of(day, period))]
        cell["visits"] += 1
        prior = [d for w, k, d in vdays if k == key and w.get("service_line") == v.get("service_line") and d < day]
        limit = dt.date(day.year - 3, day.month, 28 if (day.month, day.day) == (2, 29) else day.day)
        if not prior or max(prior) < limit:
            cell["new"] += 1
        if v.get("service_line") == "cosmetic_aesthetics" and v.get("visit_category") == "consult":
            cell["consults"] += 1
            if any(k == key and w.get("visit_category") == "procedure"
                   and w.get("service_line") == "cosmetic_aesthetics"
                   and day <= d <= day + dt.timedelta(days=90) for w, k, d in vdays):
                cell["converted"] += 1
    for a in by_kind["appointment"]:
        cell = per[(a["practice"], period_of(_date(a["start"]), period))]
        if a["status"] in SCHEDULED:
            cell["scheduled"] += 1
            if a.get("booked_at") and a["booked_at"] <= a["start"]:
                lead[(a["practice"], period_of(_date(a["start"]), period))].append(
                    (_date(a["start"]) - _date(a["booked_at"])).days)
        cell["noshow"] += a["status"] == "noshow"
        cell["cancelled"] += a["status"] == "cancelled"
        if a["status"] == "cancelled" and a.get("cancelled_at"):
            gap = dt.datetime.fromisoformat(a["start"]) - dt.datetime.fromisoformat(a["cancelled_at"])
            cell["late"] += gap < dt.timedelta(hours=24)
        if a["status"] in OCCUPYING:
            cell["booked_min"] += a.get("duration_min") or 0
    for s in by_kind["slot"]:
        if s.get("status") in ("free", "busy"):
            per[(s["practice"], period_of(_date(s["start"]), period))]["avail_min"] += s["duration_min"]
    charges = {(c["practice"], c["source_id"]): c for c in by_kind["charge"]}
    for c in by_kind["charge"]:
        cell = per[(c["practice"], period_of(_date(c["service_date"]), period))]
        cents = int(Decimal(c["amount"]) * 100)
        cell["charges"] += cents
        cell[f"fc_{c.get('financial_class') or 'unknown'}"] += cents
        if c.get("posted_on"):
            cell["posted"] += 1
            cell["lag"] += (_date(c["posted_on"]) - _date(c["service_date"])).days
    for r in by_kind["remittance"]:
        c = charges[(r["practice"], r["charge_source_id"])]
        cell = per[(c["practice"], period_of(_date(c["service_date"]), period))]
        cell["payments"] += int(Decimal(r["paid_amount"]) * 100)
        cell["adjustments"] += int(Decimal(r["adjustment_amount"]) * 100)
        cell["contractual"] += sum(int(Decimal(a["amount"]) * 100) for a in r["adjustments"] if a["group"] == "CO")
        cell["lines"] += 1
        cell["denied"] += bool(r["denied"])
        cell["adj_cents"] += int(Decimal(c["amount"]) * 100)
        cell["denied_cents"] += int(Decimal(c["amount"]) * 100) if r["denied"] else 0
    for f in by_kind["referral"]:
        cell = per[(f["practice"], period_of(_date(f["received_on"]), period))]
        cell["referrals"] += 1
        linked = [a for a in by_kind["appointment"]
                  if a["practice"] == f["practice"] and a.get("referral_source_id") == f["source_id"]]
        cell["ref_sched"] += any(a["status"] in SCHEDULED for a in linked)
        cell["ref_att"] += any(a["status"] in COMPLETED for a in linked)

    def ratio(a: int, b: int) -> float | None:
        return None if b == 0 else round(a / b, 6)

    def usd(c: int) -> str:
        return f"{Decimal(c) / 100:.2f}"

    out = {}
    for key, c in per.items():
        lt = lead.get(key)
        out[key] = {
            "visit_volume": c["visits"], "new_patient_visits": c["new"],
            "new_patient_share": ratio(c["new"], c["visits"]),
            "no_show_rate": ratio(c["noshow"], c["scheduled"]), "cancellation_rate": ratio(c["cancelled"],
                                                                                            c["scheduled"]),
            "late_cancellation_rate": ratio(c["late"], c["scheduled"]),
            "schedule_utilization": ratio(c["booked_min"], c["avail_min"]),
            "lead_time_days": round(float(statistics.median(lt)), 2) if lt else None,
            "referrals_received": c["referrals"], "referral_scheduled_rate": ratio(c["ref_sched"], c["referrals"]),
            "referral_attended_rate": ratio(c["ref_att"], c["referrals"]),
            "cosmetic_consult_conversion": ratio(c["converted"], c["consults"]),
            "gross_charges": usd(c["charges"]), "payments": usd(c["payments"]),
            "adjustments": usd(c["adjustments"]),
            "net_collection_rate": ratio(c["payments"], c["charges"] - c["contractual"]),
            "denial_rate": ratio(c["denied"], c["lines"]), "denial_rate_usd": ratio(c["denied_cents"], c["adj_cents"]),
            "charge_lag_days": None if not c["posted"] else round(c["lag"] / c["posted"], 2),
            "payer_mix_medicare": ratio(c["fc_medicare"], c["charges"]),
            "payer_mix_unknown": ratio(c["fc_unknown"], c["charges"]),
            "charges_per_visit": None if not c["visits"] else str(
                (Decimal(c["charges"]) / c["visits"] / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)),
        }
    return out


def expected_retention(state: dict[tuple[str, str, str], dict[str, Any]], site: str | None, period: str,
                       period_kind: str = "month") -> float | None:
    """Patients seen (at the site, or anywhere) in the 12 months before ``period`` and seen again in it."""
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (kind, _, _), r in state.items():
        by_kind[kind].append(r)
    patients = {(p["practice"], p["source_id"]): p for p in by_kind["patient"]}
    appts = {(a["practice"], a["source_id"]): a for a in by_kind["appointment"]}
    visits = [r for r in by_kind["appointment"] if r["status"] in COMPLETED]
    visits += [e for e in by_kind["encounter"] if e.get("status") == "finished" and
               appts.get((e["practice"], e.get("appointment_source_id")), {}).get("status") not in COMPLETED]
    since, first, after = period_bounds(period, period_kind)
    before, during = set(), set()
    for v in visits:
        if site and v["practice"] != site:
            continue
        p = patients.get((v["practice"], v.get("patient_source_id")))
        key = (p or {}).get("enterprise_id") or f"{v['practice']}:{v.get('patient_source_id')}"
        day = _date(v["start"])
        if since <= day < first:
            before.add(key)
        elif first <= day < after:
            during.add(key)
    return None if not before else round(len(before & during) / len(before), 6)


def expected_week_extras(state: dict[tuple[str, str, str], dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Third next available (from each Monday) and A/R at each Sunday, by (site, ISO week)."""
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (kind, _, _), r in state.items():
        by_kind[kind].append(r)
    out: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    mondays = [dt.date(2023, 12, 25) + dt.timedelta(weeks=k) for k in range(24)]
    for site in SITES:
        free: dict[tuple[Any, ...], list[dt.date]] = defaultdict(list)
        for s in by_kind["slot"]:
            if s["practice"] == site and s.get("status") == "free":
                free[(s.get("location_source_id"), s.get("provider_source_id"), s.get("service_line"))].append(
                    _date(s["start"]))
        charges = [c for c in by_kind["charge"] if c["practice"] == site]
        served = {c["source_id"]: _date(c["service_date"]) for c in charges}
        credits = [(served[r["charge_source_id"]], _date(r.get("paid_on") or served[r["charge_source_id"]]),
                    int((Decimal(r["paid_amount"]) + Decimal(r["adjustment_amount"])) * 100))
                   for r in by_kind["remittance"] if r["practice"] == site]
        for monday in mondays:
            waits = []
            for days in free.values():
                later = sorted(d for d in days if d >= monday)
                if len(later) >= 3 and (later[2] - monday).days <= 90:
                    waits.append((later[2] - monday).days)
            sunday = monday + dt.timedelta(days=6)
            recent_from = monday - dt.timedelta(weeks=12)  # the week and the 12 before: 91 days
            balance = sum(int(Decimal(c["amount"]) * 100) for c in charges if _date(c["service_date"]) <= sunday)
            aged = sum(int(Decimal(c["amount"]) * 100) for c in charges if _date(c["service_date"]) < recent_from)
            recent = balance - aged
            for day, paid, cents in credits:
                if day <= sunday and paid <= sunday:
                    balance -= cents
                    aged -= cents if day < recent_from else 0
            out[(site, period_of(monday, "week"))] = {
                "third_next_available_days": round(float(statistics.median(waits)), 2) if waits else None,
                "days_in_ar": round(balance / (recent / 91), 2) if recent > 0 else None,
                "ar_over_90_share": round(aged / balance, 6) if balance > 0 else None,
            }
    return out
