"""Every KPI of the catalog computed straight from the generator's facts: what the report engine must find.

This is the demo's ground truth. Each figure is computed here again, from the records the
generator made (``hub.demo.generator.Truth``), independently of the store, the pipeline and
the report engine: no engine code is imported, and each formula is written from the words
the catalog publishes (numerator, denominator, formula and note of each KPI, see
``docs/reports.md``). ``ORACLES`` holds one function per KPI id; the tests check that it
names exactly the KPIs the plugin manager registers, so a KPI cannot join the catalog
without its oracle.

Dates. Every day, ISO week and month is the practice-LOCAL calendar date of the event (the
generator makes times in the practice's zone; whatever offset a feed sends them with, the
store keeps them in that zone): an appointment, slot or encounter counts on the local day
of its start, a charge on its service date, a remittance on its charge's service date, a
referral on the day it was received.

What a feed cannot carry. The oracle computes what the report should show from the facts
*as the feed carries them* (``FEED_LIMITS``): a fact a feed format has no place for is
unknown to the hub, and the figure that needs it is computed without it. Gaps of a
connector (the feed carries the fact, the connector does not read it) are not limits: they
are listed beside the tests (``tests/demo/test_correctness.py``) as known differences.

Decisions where the catalog's words leave room (written down here, the engine may differ):

- a visit is a completed appointment (fulfilled, arrived, checked-in), or a finished
  encounter whose appointment is not a completed one; the patient is the person (the
  generator knows who is who; the hub links the same person across practices by name and
  birth date, and the generator never gives two people the same name and birth date);
- "new patient": no visit of the person in the same service line, at any practice, on a day
  in the three calendar years before the visit's day (a second visit the same day is as new
  as the first); a visit without a service line (an unmapped visit type) is in the line
  "none";
- "cosmetic": the MSO's cosmetic service line, ``cosmetic_aesthetics``
  (``mappings/mso/service_lines.yaml``); "followed ... within 90 days": a procedure visit
  on the consult's day or up to 90 days after it;
- "linked" appointments of a referral: any appointment of the practice naming it in
  ``referral_source_id`` with a scheduled status; "first": the earliest start;
- retention: the 12 calendar months (52 ISO weeks) before the period; a person seen at
  the slice's sites in that window is in the cohort, retained if seen there in the period;
- A/R at the end of a period: charges served by then less the payments and adjustments on
  them paid by then; aged A/R: the same on charges served before the last three months
  (thirteen weeks);
- third next available: per (location, provider, service line) of the practice, the third
  free slot (counting each slot) on or after the anchor day, if within 90 days; the median
  over those groups;
- money is rounded to cents half up, once, at the end.
"""

from __future__ import annotations

import bisect
import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from hub.demo.generator import Truth
from hub.mapping.vocabulary import load_vocabulary, procedure_service_lines
from hub.plugins import load_plugins

Record = dict[str, Any]
Records = list[Record]

SCHEDULED = ("booked", "arrived", "checked-in", "fulfilled", "noshow", "cancelled")
COMPLETED = ("fulfilled", "arrived", "checked-in")
OCCUPYING = ("booked", "arrived", "checked-in", "fulfilled", "noshow")  # they hold their slot time
AVAILABLE_SLOTS = ("free", "busy")
FINANCIAL_CLASSES = ("commercial", "medicare", "medicaid", "self_pay", "other")
COSMETIC_LINE = "cosmetic_aesthetics"
NEW_PATIENT_YEARS = 3
CONVERSION_DAYS = 90
THIRD_AVAILABLE_HORIZON = 90
LATE = dt.timedelta(hours=24)
CENT = Decimal("0.01")
ZERO = Decimal("0")

# What each feed type has no place for, by (kind, field; "*" the whole record): the hub cannot know it, so
# the figures are computed without it. (What a feed carries but a connector does not read is a connector
# gap: not here.)
NOT_SENT = "*"
FEED_LIMITS: dict[str, dict[tuple[str, str], str]] = {
    "hl7v2": {
        ("encounter", NOT_SENT): "the feed sends scheduling (SIU) and billing (DFT) messages, no visit (ADT): "
                                 "a visit is its completed appointment",
        ("remittance", "lines"): "a DFT^P03 posting sends the payment (FT1 type PY) and each adjustment (type AJ) "
                                 "as financial transactions of their own: each is a remittance line",
        ("remittance", "denied"): "a DFT^P03 payment posting (FT1 type PY/AJ) has no field that says a line "
                                  "was denied: the denial rates of a site whose remittances all come so are "
                                  "no data, and the site is left out of the MSO's",
        ("remittance", "adjustments"): "an FT1 adjustment line carries an amount, not its CARC group and "
                                       "reason: no adjustment is known to be contractual (group CO)",
    },
    "csv": {
        ("encounter", NOT_SENT): "the exports are appointments, charges, payments and referrals: a visit is its "
                                 "completed appointment",
        ("remittance", "adjustments"): "the payments export has one adjustment amount per row, not an amount "
                                       "per CARC group: no adjustment is known to be contractual (group CO)",
    },
    "fhir": {},
    "x12": {},  # an 835 carries every fact of a remittance: its lines, denials and CARC adjustments
}


def _usd(amount: Decimal) -> str:
    return str(amount.quantize(CENT, rounding=ROUND_HALF_UP))


def _dec(value: Any) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else ZERO


def _ratio(numerator: float | Decimal | int, denominator: float | Decimal | int) -> float | None:
    return float(numerator) / float(denominator) if denominator else None


def _median(values: list[int]) -> float | None:
    return float(statistics.median(values)) if values else None


def _months_back(day: dt.date, months: int) -> dt.date:
    """The first day of the month ``months`` before ``day``'s month."""
    index = day.year * 12 + day.month - 1 - months
    return dt.date(index // 12, index % 12 + 1, 1)


def _years_back(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


# ---------------------------------------------------------------------------------------------- periods
@dataclass(frozen=True)
class Period:
    """A month or an ISO week: its days are ``first`` up to ``end`` (exclusive)."""

    kind: str  # month | week
    first: dt.date
    end: dt.date

    @property
    def name(self) -> str:
        if self.kind == "month":
            return f"{self.first:%Y-%m}"
        year, week, _ = self.first.isocalendar()
        return f"{year}-W{week:02d}"

    @property
    def recent_from(self) -> dt.date:
        """The first day of "the last 90 days" of A/R: the month and the two before, or 13 weeks."""
        return _months_back(self.first, 2) if self.kind == "month" else self.first - dt.timedelta(weeks=12)

    @property
    def window_from(self) -> dt.date:
        """The first day of the retention look-back: the 12 months (52 weeks) before the period."""
        return _months_back(self.first, 12) if self.kind == "month" else self.first - dt.timedelta(weeks=52)


def month_period(month: str) -> Period:
    first = dt.date.fromisoformat(f"{month}-01")
    return Period("month", first, _months_back(first, -1))


def week_period(monday: dt.date) -> Period:
    return Period("week", monday, monday + dt.timedelta(days=7))


# ---------------------------------------------------------------------------------------------- facts
@dataclass(frozen=True)
class Visit:
    site: str
    person: str
    day: dt.date
    line: str  # "none" when the visit type is not mapped
    category: str | None


def _as_carried(feed: str, records: Records, remittance_feed: str = "") -> Records:
    """The records as the feed carries them (``FEED_LIMITS``): what it has no place for left out; the
    remittances as ``remittance_feed`` carries them when the practice's payments arrive by another feed."""
    limits = FEED_LIMITS.get(feed, {})
    if remittance_feed:
        limits = {**{k: v for k, v in limits.items() if k[0] != "remittance"},
                  **{k: v for k, v in FEED_LIMITS.get(remittance_feed, {}).items() if k[0] == "remittance"}}
    out = []
    for record in records:
        if (record["kind"], NOT_SENT) in limits:
            continue
        blank = {name: None for (kind, name) in limits if kind == record["kind"] and name in record}
        carried = {**record, **blank} if blank else record
        if record["kind"] == "remittance" and ("remittance", "lines") in limits:
            out += _posting_lines(carried, record.get("adjustments") or [])
        else:
            out.append(carried)
    return out


def _posting_lines(remittance: Record, adjustments: list[dict[str, Any]]) -> Records:
    """A remittance as payment postings: the payment line, then one line per adjustment."""
    lines = [{**remittance, "adjustment_amount": None}]
    lines += [{**remittance, "source_id": f"{remittance['source_id']}-{a['group']}-{a['reason']}", "paid_amount": None,
               "adjustment_amount": a["amount"]} for a in adjustments]
    return lines


class Facts:
    """The generator's facts as the feeds carry them, indexed for the oracles."""

    def __init__(self, truth: Truth) -> None:
        self.truth = truth
        self.sites = tuple(p.slug for p in truth.practices)
        self.zones = {p.slug: ZoneInfo(p.timezone) for p in truth.practices}
        self.records = {p.slug: _as_carried(p.feed, truth.records[p.slug], p.remittance_feed)
                        for p in truth.practices}
        self.by_kind: dict[tuple[str, str], Records] = defaultdict(list)
        for site, records in self.records.items():
            for r in records:
                self.by_kind[(site, r["kind"])].append(r)
        self.person = {(site, p["source_id"]): p.get("_person") or f"{site}:{p['source_id']}"
                       for site in self.sites for p in self.of(site, "patient")}
        self.charges = {(site, c["source_id"]): c for site in self.sites for c in self.of(site, "charge")}
        self.with_slots = {site for site in self.sites if self.of(site, "slot")}
        # the sites with a remittance that says whether it was denied: only they have denial rates
        self.with_denials = {site for site in self.sites
                             if any(r.get("denied") is not None for r in self.of(site, "remittance"))}
        self.costs: dict[tuple[str, str], list[Decimal]] = defaultdict(list)
        for cost in truth.costs:
            self.costs[(cost["practice"], cost["month"])].append(Decimal(cost["cost"]))
        # margin counts the payments of the (site, service line, month)s with costs (docs/reports.md)
        self.costed = {(c["practice"], c["service_line"], c["month"]) for c in truth.costs}
        self.dated: dict[str, list[tuple[dt.date, int, Record]]] = {}
        for site in self.sites:
            days = [(day, n, r) for n, r in enumerate(self.records[site]) if (day := self.day_of(site, r))]
            self.dated[site] = sorted(days, key=lambda x: (x[0], x[1]))
        self.visits = self._visits()
        self.new, self.converted = self._flags()
        self.tables: dict[str, dict[Any, dict[str, Any]]] = {}  # figures already computed (expected.by_site)
        self.linked: dict[tuple[str, str], Records] = defaultdict(list)
        for site in self.sites:
            for a in self.of(site, "appointment"):
                if a.get("referral_source_id") and a["status"] in SCHEDULED:
                    self.linked[(site, a["referral_source_id"])].append(a)

    def of(self, site: str, kind: str) -> Records:
        return self.by_kind.get((site, kind), [])

    def local_day(self, site: str, value: str) -> dt.date:
        """The practice-local calendar date of a date-time (or the date itself)."""
        if len(value) == 10:
            return dt.date.fromisoformat(value)
        moment = dt.datetime.fromisoformat(value)
        return (moment.astimezone(self.zones[site]) if moment.tzinfo else moment).date()

    def day_of(self, site: str, r: Record) -> dt.date | None:
        """The day a fact counts on; a remittance on its charge's service date."""
        kind = r["kind"]
        if kind == "remittance":
            charge = self.charges.get((site, r.get("charge_source_id") or ""))
            return self.local_day(site, charge["service_date"]) if charge else None
        column = {"appointment": "start", "slot": "start", "encounter": "start", "charge": "service_date",
                  "referral": "received_on"}.get(kind)
        value = r.get(column) if column else None
        return self.local_day(site, value) if value else None

    def _visits(self) -> dict[str, list[tuple[Visit, Record]]]:
        out: dict[str, list[tuple[Visit, Record]]] = {}
        for site in self.sites:
            completed = {a["source_id"] for a in self.of(site, "appointment") if a["status"] in COMPLETED}
            visits = [a for a in self.of(site, "appointment") if a["status"] in COMPLETED]
            visits += [e for e in self.of(site, "encounter") if e.get("status") == "finished"
                       and e.get("appointment_source_id") not in completed]
            out[site] = [(Visit(site, self.person[(site, v["patient_source_id"])], self.local_day(site, v["start"]),
                                v.get("service_line") or "none", v.get("visit_category")), v) for v in visits]
        return out

    def _flags(self) -> tuple[set[Visit], set[Visit]]:
        """The new-patient visits and the converted cosmetic consults, from every practice's visits."""
        by_person_line: dict[tuple[str, str], list[Visit]] = defaultdict(list)
        for site_visits in self.visits.values():
            for v, _ in site_visits:
                by_person_line[(v.person, v.line)].append(v)
        new, converted = set(), set()
        for (_, line), visits in by_person_line.items():
            days = sorted({v.day for v in visits})
            procedures = sorted(v.day for v in visits if v.category == "procedure")
            for v in visits:
                i = bisect.bisect_left(days, v.day)  # days[:i] are the earlier visit days
                j = bisect.bisect_left(days, _years_back(v.day, NEW_PATIENT_YEARS))
                if i == j:
                    new.add(v)
                if line == COSMETIC_LINE and v.category == "consult":
                    k = bisect.bisect_left(procedures, v.day)
                    if k < len(procedures) and (procedures[k] - v.day).days <= CONVERSION_DAYS:
                        converted.add(v)
        return new, converted


# ---------------------------------------------------------------------------------------------- a slice
@dataclass
class Slice:
    """The facts of some sites (one, or every site for the MSO total) in one period."""

    facts: Facts
    sites: tuple[str, ...]
    period: Period
    _cache: dict[str, Any] = field(default_factory=dict)

    def records(self, kind: str) -> Records:
        if kind not in self._cache:
            out = []
            for site in self.sites:
                dated = self.facts.dated[site]
                lo = bisect.bisect_left(dated, (self.period.first, -1))
                hi = bisect.bisect_left(dated, (self.period.end, -1))
                out += [r for _, _, r in dated[lo:hi] if r["kind"] == kind]
            self._cache[kind] = out
        return self._cache[kind]

    @cached_property
    def visits(self) -> list[Visit]:
        return [v for site in self.sites for v, _ in self.facts.visits[site]
                if self.period.first <= v.day < self.period.end]

    @cached_property
    def scheduled(self) -> Records:
        return [a for a in self.records("appointment") if a["status"] in SCHEDULED]

    def site_of(self, r: Record) -> str:
        return str(r["practice"])

    def day(self, r: Record, value: str) -> dt.date:
        return self.facts.local_day(self.site_of(r), value)

    @cached_property
    def remittances(self) -> list[tuple[Record, Record]]:
        """(remittance, its charge) for the remittances on the period's charges."""
        return [(r, self.facts.charges[(self.site_of(r), r["charge_source_id"])]) for r in self.records("remittance")]

    @cached_property
    def referrals(self) -> list[tuple[Record, Records]]:
        """(referral, its linked appointments) for the referrals received in the period."""
        return [(f, self.facts.linked.get((self.site_of(f), f["source_id"]), [])) for f in self.records("referral")]

    def ledger(self) -> tuple[Decimal, Decimal, Decimal, int] | None:
        """(A/R, aged A/R, charges of the last 90 days, their calendar days) at the end of the period."""
        end, recent = self.period.end, self.period.recent_from
        balance = aged = recent_charges = ZERO
        found = False
        for site in self.sites:
            for c in self.facts.of(site, "charge"):
                served = self.facts.local_day(site, c["service_date"])
                found = True
                if served >= end:
                    continue
                amount = _dec(c["amount"])
                balance += amount
                if served >= recent:
                    recent_charges += amount
                else:
                    aged += amount
            for r in self.facts.of(site, "remittance"):
                charge = self.facts.charges.get((site, r.get("charge_source_id") or ""))
                if charge is None:
                    continue
                served = self.facts.local_day(site, charge["service_date"])
                paid = self.facts.local_day(site, r["paid_on"]) if r.get("paid_on") else served
                if served >= end or paid >= end:
                    continue
                credit = _dec(r.get("paid_amount")) + _dec(r.get("adjustment_amount"))
                balance -= credit
                if served < recent:
                    aged -= credit
        return (balance, aged, recent_charges, (end - recent).days) if found else None

    def costs(self) -> Decimal | None:
        """The imported costs of the period: a month's (costs are monthly; a week has none)."""
        if self.period.kind != "month":
            return None
        found = [c for site in self.sites for c in self.facts.costs.get((site, self.period.name), [])]
        return sum(found, ZERO) if found else None

    def gross(self) -> Decimal:
        return sum((_dec(c["amount"]) for c in self.records("charge")), ZERO)

    def paid(self) -> Decimal:
        return sum((_dec(r.get("paid_amount")) for r, _ in self.remittances), ZERO)

    def paid_costed(self) -> Decimal:
        """Payments on the charges whose site, service line and month have imported costs. A charge's
        line as the reports attribute it: its visit's mapped line, else its procedure code's."""
        lines = procedure_service_lines(load_vocabulary())
        return sum((_dec(r.get("paid_amount")) for r, c in self.remittances
                    if (self.site_of(c), c.get("service_line") or lines.get(str(c.get("procedure_code"))),
                        str(c["service_date"])[:7]) in self.facts.costed), ZERO)


# ---------------------------------------------------------------------------------------------- the oracles
@dataclass(frozen=True)
class Oracle:
    kpi: str
    unit: str
    compute: Callable[[Slice], Any]


ORACLES: dict[str, Oracle] = {}


def oracle(kpi: str, unit: str) -> Callable[[Callable[[Slice], Any]], Callable[[Slice], Any]]:
    def register(fn: Callable[[Slice], Any]) -> Callable[[Slice], Any]:
        if kpi in ORACLES:
            raise ValueError(f"two oracles for {kpi}")
        ORACLES[kpi] = Oracle(kpi, unit, fn)
        return fn
    return register


@oracle("visit_volume", "count")
def visit_volume(s: Slice) -> int:
    """Completed appointments plus finished encounters not tied to a completed appointment."""
    return len(s.visits)


@oracle("new_patient_visits", "count")
def new_patient_visits(s: Slice) -> int:
    """Visits of people with no visit in the same service line anywhere in the MSO in the 3 years before."""
    return sum(1 for v in s.visits if v in s.facts.new)


@oracle("new_patient_share", "ratio")
def new_patient_share(s: Slice) -> float | None:
    return _ratio(new_patient_visits(s), len(s.visits))


@oracle("no_show_rate", "ratio")
def no_show_rate(s: Slice) -> float | None:
    return _ratio(sum(1 for a in s.scheduled if a["status"] == "noshow"), len(s.scheduled))


@oracle("cancellation_rate", "ratio")
def cancellation_rate(s: Slice) -> float | None:
    return _ratio(sum(1 for a in s.scheduled if a["status"] == "cancelled"), len(s.scheduled))


@oracle("late_cancellation_rate", "ratio")
def late_cancellation_rate(s: Slice) -> float | None:
    """Cancelled less than 24 hours before the start (two instants: no calendar involved)."""
    late = sum(1 for a in s.scheduled if a["status"] == "cancelled" and a.get("cancelled_at")
               and dt.datetime.fromisoformat(a["start"]) - dt.datetime.fromisoformat(a["cancelled_at"]) < LATE)
    return _ratio(late, len(s.scheduled))


@oracle("schedule_utilization", "ratio")
def schedule_utilization(s: Slice) -> float | None:
    """Booked minutes at the sites that publish slots over the free and busy slot minutes."""
    available = sum(x["duration_min"] for x in s.records("slot") if x["status"] in AVAILABLE_SLOTS)
    booked = sum(a["duration_min"] or 0 for a in s.records("appointment")
                 if a["status"] in OCCUPYING and s.site_of(a) in s.facts.with_slots)
    return _ratio(booked, available)


@oracle("lead_time_days", "days")
def lead_time_days(s: Slice) -> float | None:
    """Median of local start date minus local booking date, over scheduled appointments with booked_at."""
    return _median([(s.day(a, a["start"]) - s.day(a, a["booked_at"])).days
                    for a in s.scheduled if a.get("booked_at")])


@oracle("third_next_available_days", "days")
def third_next_available_days(s: Slice) -> float | None:
    """Days from the period's first day to the third free slot on or after it, per (location, provider,
    service line), within 90 days; the median over those."""
    anchor = s.period.first
    values = []
    for site in s.sites:
        free: dict[tuple[Any, ...], list[dt.date]] = defaultdict(list)
        for x in s.facts.of(site, "slot"):
            if x["status"] == "free":
                key = (x.get("location_source_id"), x.get("provider_source_id"), x.get("service_line"))
                free[key].append(s.facts.local_day(site, x["start"]))
        for days in free.values():
            days.sort()
            i = bisect.bisect_left(days, anchor)
            if i + 2 < len(days) and (days[i + 2] - anchor).days <= THIRD_AVAILABLE_HORIZON:
                values.append((days[i + 2] - anchor).days)
    return _median(values)


@oracle("referrals_received", "count")
def referrals_received(s: Slice) -> int:
    return len(s.referrals)


@oracle("referral_scheduled_rate", "ratio")
def referral_scheduled_rate(s: Slice) -> float | None:
    return _ratio(sum(1 for _, linked in s.referrals if linked), len(s.referrals))


@oracle("referral_attended_rate", "ratio")
def referral_attended_rate(s: Slice) -> float | None:
    return _ratio(sum(1 for _, linked in s.referrals if any(a["status"] in COMPLETED for a in linked)),
                  len(s.referrals))


def _referral_days(s: Slice, statuses: tuple[str, ...]) -> float | None:
    days = []
    for f, linked in s.referrals:
        starts = [s.day(a, a["start"]) for a in linked if a["status"] in statuses]
        if starts:
            days.append((min(starts) - s.day(f, f["received_on"])).days)
    return _median(days)


@oracle("referral_to_scheduled_days", "days")
def referral_to_scheduled_days(s: Slice) -> float | None:
    return _referral_days(s, SCHEDULED)


@oracle("referral_to_attended_days", "days")
def referral_to_attended_days(s: Slice) -> float | None:
    return _referral_days(s, COMPLETED)


@oracle("cosmetic_consult_conversion", "ratio")
def cosmetic_consult_conversion(s: Slice) -> float | None:
    consults = [v for v in s.visits if v.line == COSMETIC_LINE and v.category == "consult"]
    return _ratio(sum(1 for v in consults if v in s.facts.converted), len(consults))


@oracle("patient_retention", "ratio")
def patient_retention(s: Slice) -> float | None:
    """People seen at the slice's sites in the 12 months (52 weeks) before the period, seen again in it."""
    lo, first, end = s.period.window_from, s.period.first, s.period.end
    cohort, seen = set(), set()
    for site in s.sites:
        for v, _ in s.facts.visits[site]:
            if lo <= v.day < first:
                cohort.add(v.person)
            elif first <= v.day < end:
                seen.add(v.person)
    return _ratio(len(cohort & seen), len(cohort))


@oracle("gross_charges", "usd")
def gross_charges(s: Slice) -> str:
    return _usd(s.gross())


@oracle("payments", "usd")
def payments(s: Slice) -> str:
    return _usd(s.paid())


@oracle("adjustments", "usd")
def adjustments(s: Slice) -> str:
    return _usd(sum((_dec(r.get("adjustment_amount")) for r, _ in s.remittances), ZERO))


@oracle("net_collection_rate", "ratio")
def net_collection_rate(s: Slice) -> float | None:
    """Payments over gross charges less contractual adjustments (CARC group CO)."""
    contractual = sum((_dec(a["amount"]) for r, _ in s.remittances for a in r.get("adjustments") or ()
                       if a.get("group") == "CO"), ZERO)
    base = s.gross() - contractual
    return _ratio(s.paid(), base) if base > 0 else None


def _adjudicated(s: Slice) -> list[tuple[Record, Record]]:
    """The remittances of the slice's sites that carry denials (a site none of whose remittances says
    whether a line was denied has no denial rate, and is left out of the MSO's)."""
    return [(r, c) for r, c in s.remittances if s.site_of(r) in s.facts.with_denials]


@oracle("denial_rate", "ratio")
def denial_rate(s: Slice) -> float | None:
    lines = _adjudicated(s)
    return _ratio(sum(1 for r, _ in lines if r.get("denied")), len(lines))


@oracle("denial_rate_usd", "ratio")
def denial_rate_usd(s: Slice) -> float | None:
    lines = _adjudicated(s)
    adjudicated = sum((_dec(c["amount"]) for _, c in lines), ZERO)
    denied = sum((_dec(c["amount"]) for r, c in lines if r.get("denied")), ZERO)
    return _ratio(denied, adjudicated)


@oracle("days_in_ar", "days")
def days_in_ar(s: Slice) -> float | None:
    ledger = s.ledger()
    if ledger is None or ledger[2] <= 0:
        return None
    balance, _, recent, days = ledger
    return float(balance) / (float(recent) / days)


@oracle("ar_over_90_share", "ratio")
def ar_over_90_share(s: Slice) -> float | None:
    ledger = s.ledger()
    if ledger is None or ledger[0] <= 0:
        return None
    return _ratio(ledger[1], ledger[0])


@oracle("charges_per_visit", "usd")
def charges_per_visit(s: Slice) -> str | None:
    return _usd(s.gross() / len(s.visits)) if s.visits else None


@oracle("payments_per_visit", "usd")
def payments_per_visit(s: Slice) -> str | None:
    return _usd(s.paid() / len(s.visits)) if s.visits else None


@oracle("charge_lag_days", "days")
def charge_lag_days(s: Slice) -> float | None:
    lags = [(dt.date.fromisoformat(c["posted_on"]) - dt.date.fromisoformat(c["service_date"])).days
            for c in s.records("charge") if c.get("posted_on")]
    return sum(lags) / len(lags) if lags else None


@oracle("costs", "usd")
def costs(s: Slice) -> str | None:
    found = s.costs()
    return None if found is None else _usd(found)


@oracle("margin", "usd")
def margin(s: Slice) -> str | None:
    found = s.costs()
    return None if found is None else _usd(s.paid_costed() - found)


@oracle("margin_rate", "ratio")
def margin_rate(s: Slice) -> float | None:
    found, paid = s.costs(), s.paid_costed()
    return None if found is None or not paid else _ratio(paid - found, paid)


# the work RVU table the demo imports (hub.demo.build.SAMPLE_RVUS), read here as the published CSV it is
RVU_SAMPLE = "examples/rvus/work-rvus-sample.csv"
_RVUS: dict[tuple[int, str, str], Decimal] = {}


def _rvu_table() -> dict[tuple[int, str, str], Decimal]:
    """(year, code, modifier or '') → work RVU."""
    if not _RVUS:
        import csv
        from pathlib import Path

        with open(Path(__file__).resolve().parents[2] / RVU_SAMPLE, newline="") as f:
            for row in csv.DictReader(f):
                _RVUS[(int(row["year"]), row["code"], row["modifier"])] = Decimal(row["work_rvu"])
    return _RVUS


def _line_rvus(charge: Record) -> Decimal | None:
    """A charge line's work RVUs: the schedule of the latest year on or before its service year; in it the row
    of the first of the line's modifiers that has one, else the code's base row; times units. None: no row
    prices it."""
    table = _rvu_table()
    served = int(charge["service_date"][:4])
    years = [y for y in {y for y, _, _ in table} if y <= served]
    if not years:
        return None
    year, code = max(years), str(charge.get("procedure_code") or "")
    named = [m for m in charge.get("modifiers") or () if (year, code, m) in table]
    value = table.get((year, code, named[0] if named else ""))
    return None if value is None else value * (charge.get("units") or 1)


def _work_rvus(s: Slice) -> Decimal:
    return sum((v for c in s.records("charge") if (v := _line_rvus(c)) is not None), ZERO)


@oracle("work_rvus", "rvu")
def work_rvus(s: Slice) -> float:
    return float(_usd(_work_rvus(s)))  # two places, half up, as money


@oracle("work_rvus_per_visit", "rvu")
def work_rvus_per_visit(s: Slice) -> float | None:
    return float(_usd(_work_rvus(s) / len(s.visits))) if s.visits else None


def _payer_mix(financial_class: str | None) -> Callable[[Slice], float | None]:
    def share(s: Slice) -> float | None:
        charges = s.records("charge")
        part = sum((_dec(c["amount"]) for c in charges if (c.get("financial_class") == financial_class
                    if financial_class else c.get("financial_class") not in FINANCIAL_CLASSES)), ZERO)
        return _ratio(part, s.gross())
    return share


for _fc in (*FINANCIAL_CLASSES, None):
    oracle(f"payer_mix_{_fc or 'unknown'}", "ratio")(_payer_mix(_fc))


# ---------------------------------------------------------------------------------------------- tables
_FACTS: dict[int, tuple[Truth, Facts]] = {}


def facts_of(truth: Truth) -> Facts:
    """The indexed facts of a truth, made once."""
    held = _FACTS.get(id(truth))
    if held is None or held[0] is not truth:
        held = _FACTS[id(truth)] = (truth, Facts(truth))
    return held[1]


def months(truth: Truth) -> list[Period]:
    return [month_period(m) for m in truth.months()]


def weeks(truth: Truth) -> list[Period]:
    """The ISO weeks wholly inside the generated history."""
    monday = truth.start + dt.timedelta(days=-truth.start.weekday() % 7)
    out = []
    while monday + dt.timedelta(days=7) <= truth.end:
        out.append(week_period(monday))
        monday += dt.timedelta(days=7)
    return out


def _has_facts(facts: Facts, site: str, period: Period) -> bool:
    dated = facts.dated[site]
    i = bisect.bisect_left(dated, (period.first, -1))
    return (i < len(dated) and dated[i][0] < period.end) or (period.kind == "month" and bool(
        facts.costs.get((site, period.name))))


def _table(truth: Truth, scopes: Callable[[Facts], list[tuple[Any, tuple[str, ...], Period]]], name: str,
           kpis: Iterable[str] | None) -> dict[Any, dict[str, Any]]:
    """{key: {kpi: figure}} for each (key, sites, period) a scope names; every figure computed once per truth."""
    facts = facts_of(truth)
    if name not in facts.tables:
        facts.tables[name] = {key: {k: o.compute(Slice(facts, sites, period)) for k, o in ORACLES.items()}
                              for key, sites, period in scopes(facts)}
    chosen = tuple(ORACLES) if kpis is None else tuple(kpis)
    return {key: {k: values[k] for k in chosen} for key, values in facts.tables[name].items()}


def by_site(truth: Truth, periods: list[Period], kpis: Iterable[str] | None = None
            ) -> dict[tuple[str, str], dict[str, Any]]:
    """{(site, period name): {kpi: figure}} for each site and period with facts."""
    def scopes(facts: Facts) -> list[tuple[Any, tuple[str, ...], Period]]:
        return [((site, p.name), (site,), p) for site in facts.sites for p in periods if _has_facts(facts, site, p)]
    return _table(truth, scopes, "site:" + ",".join(p.name for p in periods), kpis)


def total(truth: Truth, periods: list[Period], kpis: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """{period name: {kpi: figure}}: the MSO total, every site together."""
    def scopes(facts: Facts) -> list[tuple[Any, tuple[str, ...], Period]]:
        return [(p.name, facts.sites, p) for p in periods if any(_has_facts(facts, site, p) for site in facts.sites)]
    return _table(truth, scopes, "total:" + ",".join(p.name for p in periods), kpis)


def by_site_month(truth: Truth, kpis: Iterable[str] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    return by_site(truth, months(truth), kpis)


def by_site_week(truth: Truth, kpis: Iterable[str] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    return by_site(truth, weeks(truth), kpis)


def total_by_month(truth: Truth, kpis: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    return total(truth, months(truth), kpis)


def total_by_week(truth: Truth, kpis: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    return total(truth, weeks(truth), kpis)


def report_from_truth(truth: Truth) -> dict[str, Any]:
    """A document of the report contract's shape (by site and month), figures taken from the facts.

    The definitions are the catalog's own words (the shape of the contract); every value is an oracle's."""
    definitions = [k.definition() for k in load_plugins().kpis]
    per_site = by_site_month(truth)
    rows = [{"slice": {"site": site, "month": month}, "values": values}
            for (site, month), values in sorted(per_site.items())]
    totals = total_by_month(truth)
    medians = []
    for month in truth.months():
        values: dict[str, Any] = {}
        for kpi, spec in ORACLES.items():
            figures = [v[kpi] for (_, m), v in per_site.items() if m == month and v[kpi] is not None]
            if not figures:
                values[kpi] = None
            elif spec.unit == "usd":
                values[kpi] = _usd(Decimal(statistics.median(Decimal(f) for f in figures)))
            else:
                values[kpi] = statistics.median(figures)
        medians.append({"slice": {"month": month}, "values": values})
    return {
        "generated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "from": truth.start.isoformat(), "to": (truth.end - dt.timedelta(days=1)).isoformat(),
        "by": ["site", "month"],
        "definitions": definitions,
        "rows": rows,
        "total": [{"slice": {"month": m}, "values": totals[m]} for m in truth.months()],
        "site_median": medians,
        "sites": [{"slug": p.slug, "name": p.name, "status": p.status} for p in truth.practices],
    }
