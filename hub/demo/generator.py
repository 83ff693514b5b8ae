"""A synthetic MSO: several practices, a year and more of activity, and the facts behind it.

Everything here is invented (names, MRNs, NPIs); nothing is drawn from real people.
The generator is deterministic for a given seed and end month, and returns the
ground truth: every record it made, in the common model, before any feed format
is applied. The connectors render those facts as HL7 v2, FHIR R4 and CSV
(``hub.demo.feeds`` asks the connector of each practice's feed); the tests
recompute each KPI from these facts and compare with the report engine.

The practices differ on purpose, the way real affiliates do: volume and its
seasons, no-show and cancellation habits, payer mix, prices and denial rates.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

FIRST_NAMES = ("Avery", "Blake", "Casey", "Dana", "Emery", "Finley", "Gray", "Harper", "Indy", "Jordan", "Kai",
               "Logan", "Morgan", "Noel", "Oakley", "Parker", "Quinn", "Reese", "Sage", "Tatum", "Val", "Wren")
FAMILY_NAMES = ("Alder", "Birch", "Cedar", "Dogwood", "Elm", "Fir", "Ginkgo", "Hazel", "Ironwood", "Juniper",
                "Larch", "Maple", "Nettle", "Olive", "Pine", "Rowan", "Spruce", "Tamarack", "Willow", "Yew")


@dataclass(frozen=True)
class VisitType:
    code: str
    name: str
    service_line: str
    category: str  # new | established | procedure
    minutes: int
    procedures: tuple[tuple[str, str], ...]  # (CPT, price)


@dataclass(frozen=True)
class Payer:
    name: str  # as the practice's system spells it
    payer: str  # MSO payer
    financial_class: str
    share: float  # of the practice's patients
    allowed: float  # allowed / billed
    denial: float  # probability a claim line is denied
    days: tuple[int, int]  # days from service to payment
    mapped: bool = True  # False: the practice's mapping does not know this payer yet (no MSO payer, no class)

    @property
    def mso_payer(self) -> str | None:
        return self.payer if self.mapped else None

    @property
    def mso_class(self) -> str | None:
        return self.financial_class if self.mapped else None


@dataclass(frozen=True)
class PracticeSpec:
    slug: str
    name: str
    feed: str  # hl7v2 | fhir | csv
    timezone: str
    specialty: str
    status: str  # live | onboarding
    providers: tuple[tuple[str, str, str], ...]  # (npi, family, given)
    locations: tuple[tuple[str, str, str], ...]  # (source code, name, MSO location)
    visit_types: tuple[tuple[VisitType, float], ...]  # with their share of visits
    payers: tuple[Payer, ...]
    cancel_reasons: tuple[tuple[str, str, float], ...]  # (code, category, share)
    daily_visits: float  # average per working day per provider
    seasons: tuple[float, ...]  # 12 monthly factors, January first
    no_show: float
    cancel: float
    late_cancel_share: float  # of cancellations, those under 24 h before the start
    referral_share: float  # of new patients who arrive with a referral
    slot_minutes: int = 0  # > 0: the feed publishes its schedule (slots), the utilization denominator
    months: int = 0  # > 0: only this many months of history (a newly acquired practice)
    unmapped_visit_types: tuple[str, ...] = ()  # codes the practice's mapping does not know yet
    new_categories: tuple[str, ...] = ("new",)  # visit categories that bring a new patient
    # a share of the new patients are people already seen at another practice of the MSO (same name and
    # birth date, the practice's own MRN): the enterprise id links them, and a visit in a service line
    # they were seen in elsewhere is not a new-patient visit
    shares_patients_with: str = ""
    shared_patient_share: float = 0.0
    evening_clinic: bool = False  # visits 20:00-23:00 local on each month's last day (in UTC: the next month)
    feed_times: str = "local"  # how the feed writes date-times: local (with the offset), utc, naive (no offset)
    backfill_shuffled: bool = False  # the history arrives as a backfill written in no particular order
    system: str = ""  # the practice's sending system as its feed names it (HL7 v2 MSH-3), if the feed does
    # the connector its payers' remittances arrive in when not its feed ("x12": 835s from its clearinghouse)
    remittance_feed: str = ""

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def _vt(code: str, name: str, line: str, category: str, minutes: int, *procs: tuple[str, str]) -> VisitType:
    return VisitType(code, name, line, category, minutes, procs)


COMMERCIAL = "commercial"
LOOK_AHEAD_DAYS = 70
PRACTICES: tuple[PracticeSpec, ...] = (
    PracticeSpec(
        slug="lakeshore-derm", name="Lakeshore Dermatology", feed="hl7v2", timezone="America/Chicago",
        specialty="dermatology", status="live", system="DERMEHR",
        providers=(("1526018159", "Alvarez", "Maria"), ("1131860912", "Chen", "Lily"),
                   ("1518190933", "Greer", "Hannah"), ("1432319485", "Iyer", "Priya")),
        locations=(("LP", "Lakeshore Lincoln Park", "chi-lincoln-park"), ("OB", "Lakeshore Oak Brook",
                                                                         "chi-oak-brook"),
                   ("NAP", "Lakeshore Naperville", "chi-naperville")),
        visit_types=((_vt("NP", "New patient visit", "medical_dermatology", "new", 30, ("99203", "165.00")), 0.22),
                     (_vt("EST", "Established visit", "medical_dermatology", "established", 15,
                          ("99213", "110.00")), 0.48),
                     (_vt("FBSE", "Full body skin exam", "medical_dermatology", "established", 20,
                          ("99214", "160.00")), 0.15),
                     (_vt("BX", "Skin biopsy", "medical_dermatology", "procedure", 30, ("99213", "110.00"),
                          ("11102", "145.00")), 0.10),
                     (_vt("MOHS", "Mohs surgery", "mohs_surgical", "procedure", 90, ("17311", "980.00")),
                      0.05)),
        payers=(Payer("AETNA PPO", "aetna", COMMERCIAL, 0.30, 0.62, 0.05, (18, 40)),
                Payer("BCBS IL", "bcbs", COMMERCIAL, 0.28, 0.66, 0.04, (14, 35)),
                Payer("MEDICARE PART B", "medicare", "medicare", 0.32, 0.48, 0.03, (14, 28)),
                Payer("ILLINOIS MEDICAID", "medicaid", "medicaid", 0.10, 0.35, 0.12, (25, 60))),
        cancel_reasons=(("PT", "patient", 0.6), ("PROV", "provider", 0.15), ("WX", "weather", 0.1),
                        ("RS", "rescheduled", 0.15)),
        daily_visits=7.0, seasons=(1.05, 1.0, 1.1, 1.15, 1.1, 0.95, 0.85, 0.9, 1.0, 1.05, 1.0, 0.85),
        no_show=0.06, cancel=0.09, late_cancel_share=0.3, referral_share=0.5,
    ),
    PracticeSpec(
        slug="carmel-aesthetics", name="Carmel Aesthetics", feed="fhir", timezone="America/Indiana/Indianapolis",
        specialty="cosmetic dermatology", status="live",
        providers=(("1786579759", "Hoang", "Minh"), ("1625276013", "Kowalski", "Anna")),
        locations=(("carmel-main", "Carmel Aesthetics", "ind-carmel"),),
        visit_types=((_vt("consult", "Cosmetic consultation", "cosmetic_aesthetics", "consult", 30,
                          ("99203", "150.00")), 0.20),
                     (_vt("botox", "Neuromodulator", "cosmetic_aesthetics", "procedure", 30, ("64615", "520.00")),
                      0.40),
                     (_vt("filler", "Dermal filler", "cosmetic_aesthetics", "procedure", 45, ("15788", "780.00")),
                      0.25),
                     (_vt("laser", "Laser resurfacing", "cosmetic_aesthetics", "procedure", 60,
                          ("17106", "1150.00")), 0.15)),
        payers=(Payer("Self Pay", "self_pay", "self_pay", 0.85, 1.0, 0.0, (0, 0)),
                Payer("Cigna", "cigna", COMMERCIAL, 0.15, 0.58, 0.22, (20, 45))),
        cancel_reasons=(("patient-request", "patient", 0.8), ("prov-unavailable", "provider", 0.2)),
        daily_visits=6.0, seasons=(0.85, 0.95, 1.05, 1.15, 1.2, 1.0, 0.85, 0.85, 0.95, 1.05, 1.25, 1.3),
        no_show=0.035, cancel=0.12, late_cancel_share=0.45, referral_share=0.15, slot_minutes=30,
        new_categories=("consult",),
        evening_clinic=True, feed_times="utc",
    ),
    PracticeSpec(
        slug="fishers-pt", name="Fishers Physical Therapy", feed="csv", timezone="America/Indiana/Indianapolis",
        specialty="physical therapy", status="live",
        providers=(("1082462817", "Eriksen", "Nils"),),
        locations=(("FISH-1", "Fishers Physical Therapy", "ind-fishers"),),
        visit_types=((_vt("EVAL", "PT evaluation", "physical_therapy", "new", 60, ("97162", "210.00")), 0.15),
                     (_vt("TX", "PT treatment", "physical_therapy", "established", 45, ("97110", "75.00"),
                          ("97140", "70.00")), 0.75),
                     (_vt("REEVAL", "PT re-evaluation", "physical_therapy", "follow_up", 30,
                          ("97164", "120.00")), 0.10)),
        payers=(Payer("UNITED HEALTHCARE", "uhc", COMMERCIAL, 0.35, 0.55, 0.08, (20, 45)),
                Payer("MEDICARE", "medicare", "medicare", 0.40, 0.50, 0.04, (14, 30)),
                Payer("WORKERS COMP", "workers_comp", "other", 0.25, 0.70, 0.15, (30, 75))),
        cancel_reasons=(("Patient", "patient", 0.7), ("Illness", "patient", 0.2), ("Therapist", "provider", 0.1)),
        daily_visits=11.0, seasons=(1.15, 1.05, 1.0, 1.0, 1.0, 1.05, 1.1, 1.05, 0.95, 0.95, 0.9, 0.75),
        no_show=0.11, cancel=0.14, late_cancel_share=0.35, referral_share=0.8,
    ),
    PracticeSpec(
        slug="mke-skin", name="Milwaukee Skin and Mohs", feed="hl7v2", timezone="America/Chicago",
        specialty="dermatology", status="onboarding", system="SKINPM",
        providers=(("1908301660", "Brennan", "Thomas"), ("1757491182", "Jensen", "Karl"),
                   ("1895559791", "Lindqvist", "Erik")),
        locations=(("DT", "Milwaukee Downtown", "mke-downtown"), ("BRK", "Brookfield Mohs Center", "mke-brookfield")),
        visit_types=((_vt("NEW", "New patient", "medical_dermatology", "new", 30, ("99203", "170.00")), 0.25),
                     (_vt("FU", "Follow-up", "medical_dermatology", "follow_up", 15, ("99213", "115.00")), 0.45),
                     (_vt("MOHS1", "Mohs first stage", "mohs_surgical", "procedure", 90, ("17311", "990.00")),
                      0.15),
                     (_vt("POSTOP", "Post-op check", "mohs_surgical", "post_op", 15, ("99024", "0.00")), 0.05),
                     (_vt("COSM", "Cosmetic consult", "cosmetic_aesthetics", "consult", 30, ("99203", "150.00")),
                      0.10)),
        payers=(Payer("AETNA", "aetna", COMMERCIAL, 0.45, 0.60, 0.07, (18, 40)),
                Payer("MEDICARE", "medicare", "medicare", 0.40, 0.48, 0.04, (14, 28)),
                Payer("HUMANA GOLD PLUS", "medicare_advantage", "medicare", 0.15, 0.50, 0.09, (20, 45)),
                Payer("TRICARE EAST", "tricare", "other", 0.06, 0.62, 0.05, (20, 40), mapped=False)),
        cancel_reasons=(("CXL-PT", "patient", 0.7), ("CXL-DR", "provider", 0.3)),
        daily_visits=6.0, seasons=(1.05, 1.0, 1.1, 1.15, 1.1, 0.95, 0.85, 0.9, 1.0, 1.05, 1.0, 0.85),
        no_show=0.08, cancel=0.10, late_cancel_share=0.3, referral_share=0.4,
        months=2, unmapped_visit_types=("MOHS1", "COSM"),
        shares_patients_with="lakeshore-derm", shared_patient_share=0.25,
        feed_times="naive", backfill_shuffled=True, remittance_feed="x12",
    ),
)


@dataclass
class Truth:
    """What the generator made: practices and their records in the common model, by practice slug."""

    start: dt.date
    end: dt.date  # exclusive: the first day after the generated history
    practices: tuple[PracticeSpec, ...]
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # what the MSO's finance team imports (``hub costs import``): {practice, service_line, month, cost}
    costs: list[dict[str, str]] = field(default_factory=list)

    def of(self, practice: str, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records[practice] if r["kind"] == kind]

    def practice(self, slug: str) -> PracticeSpec:
        return next(p for p in self.practices if p.slug == slug)

    def months(self) -> list[str]:
        return sorted({r["start"][:7] for recs in self.records.values() for r in recs if r["kind"] == "appointment"})


def _month_starts(first: dt.date, end: dt.date) -> Iterator[dt.date]:
    day = first
    while day < end:
        yield day
        day = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def _money(value: float | Decimal) -> str:
    return str(Decimal(str(value)).quantize(Decimal("0.01")))


def default_end(today: dt.date | None = None) -> dt.date:
    """The history runs up to the first day of the current month (a full last month)."""
    return (today or dt.date.today()).replace(day=1)


def generate(*, seed: int = 7, end: dt.date | None = None, months: int = 13, scale: float = 1.0,
             practices: tuple[PracticeSpec, ...] = PRACTICES) -> Truth:
    """Build the MSO's history: ``months`` whole months ending the day before ``end``."""
    end = default_end(end) if end is None else end
    first = end
    for _ in range(months):
        first = (first - dt.timedelta(days=1)).replace(day=1)
    truth = Truth(start=first, end=end, practices=practices)
    people: dict[tuple[str, str, str], str] = {}  # (family, given, birth date) → person: one person each
    for index, spec in enumerate(practices):
        rng = random.Random(f"{seed}:{index}:{spec.slug}")
        start = first
        if spec.months:
            start = end
            for _ in range(spec.months):
                start = (start - dt.timedelta(days=1)).replace(day=1)
        known = [r for r in truth.records.get(spec.shares_patients_with, ()) if r["kind"] == "patient"]
        truth.records[spec.slug] = _PracticeHistory(spec, rng, start, end, scale, people, known).build()
        truth.costs += _costs(spec, random.Random(f"{seed}:{index}:{spec.slug}:costs"), start, end, scale)
    return truth


def _costs(spec: PracticeSpec, rng: random.Random, start: dt.date, end: dt.date, scale: float
           ) -> list[dict[str, str]]:
    """A month's cost of each service line the practice runs: a third to a half of what a usual month bills.
    Every line, whether or not the practice mapping knows its visit types yet: finance keeps the books by
    cost centre, not by feed."""
    billed: dict[str, float] = {}
    for vt, share in spec.visit_types:
        price = sum(float(p) for _, p in vt.procedures)
        billed[vt.service_line] = billed.get(vt.service_line, 0.0) + share * price
    out = []
    for month in _month_starts(start, end):
        visits = spec.daily_visits * spec.seasons[month.month - 1] * scale * len(spec.providers) * 21
        for line, per_visit in sorted(billed.items()):
            out.append({"practice": spec.slug, "service_line": line, "month": f"{month:%Y-%m}",
                        "cost": _money(visits * per_visit * rng.uniform(0.33, 0.5))})
    return out


class _PracticeHistory:
    def __init__(self, spec: PracticeSpec, rng: random.Random, start: dt.date, end: dt.date, scale: float,
                 people: dict[tuple[str, str, str], str], known: list[dict[str, Any]]) -> None:
        self.spec, self.rng, self.start, self.end, self.scale = spec, rng, start, end, scale
        self.people, self.known = people, known
        self.records: list[dict[str, Any]] = []
        self.patients: list[dict[str, Any]] = []
        self.seen: set[str] = set()
        self.slot_by_id: dict[str, dict[str, Any]] = {}
        self.counter = 0

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter:06d}"

    def add(self, kind: str, source_id: str, **fields: Any) -> dict[str, Any]:
        record = {"kind": kind, "practice": self.spec.slug, "source_id": source_id, **fields}
        self.records.append(record)
        return record

    def build(self) -> list[dict[str, Any]]:
        spec = self.spec
        for code, name, mso in spec.locations:
            self.add("location", code, name=name, mso_location=mso)
        for npi, family, given in spec.providers:
            self.add("provider", npi, npi=npi, family_name=family, given_name=given, specialty=spec.specialty)
        day = self.start
        while day < self.end:
            if day.weekday() < 5:
                self.working_day(day)
            if spec.evening_clinic and (day + dt.timedelta(days=1)).day == 1:
                self.evening(day)
            day += dt.timedelta(days=1)
        # Referrals received before the end for visits after it: still open when the history stops.
        while day < self.end + dt.timedelta(days=LOOK_AHEAD_DAYS):
            if day.weekday() < 5:
                self.open_referrals(day)
            day += dt.timedelta(days=1)
        return self.records

    def open_referrals(self, day: dt.date) -> None:
        spec, rng = self.spec, self.rng
        expected = spec.daily_visits * spec.seasons[day.month - 1] * self.scale * len(spec.providers)
        new_share = sum(w for v, w in spec.visit_types if v.category in spec.new_categories)
        for _ in range(int(rng.gauss(expected * new_share * spec.referral_share, 1.0))):
            received = day - dt.timedelta(days=rng.randint(3, LOOK_AHEAD_DAYS))
            if not self.start <= received < self.end:  # the history is what was received in it
                continue
            patient = self.new_patient()
            line = rng.choices([v for v, _ in spec.visit_types], weights=[w for _, w in spec.visit_types])[0]
            self.add("referral", self.next_id("R"), patient_source_id=patient["source_id"],
                     referring_provider=f"{rng.choice(FAMILY_NAMES)} {rng.choice(FIRST_NAMES)} MD",
                     specialty=spec.specialty, service_line=line.service_line, received_on=received.isoformat(),
                     status="active")

    # ------------------------------------------------------------ people
    def new_patient(self) -> dict[str, Any]:
        rng, spec = self.rng, self.spec
        mrn = self.next_id("".join(word[0] for word in spec.slug.split("-")).upper())
        if self.known and rng.random() < spec.shared_patient_share:
            return self.shared_patient(mrn, rng.choice(self.known))
        birth = dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 65))
        payer = rng.choices(spec.payers, weights=[p.share for p in spec.payers])[0]
        if payer.financial_class == "medicare" and birth.year > 1958:
            birth = dt.date(rng.randrange(1940, 1958), birth.month, min(birth.day, 28))
        family, given = rng.choice(FAMILY_NAMES), rng.choice(FIRST_NAMES)
        while (family, given, birth.isoformat()) in self.people:  # another person: the hub would link them
            birth += dt.timedelta(days=1)
        person = f"{spec.slug}:{mrn}"
        self.people[(family, given, birth.isoformat())] = person
        patient = self.add("patient", mrn, identifiers=[{"system": f"urn:demo:{spec.slug}:mrn", "value": mrn,
                                                         "type": "MR"}],
                           family_name=family, given_name=given,
                           birth_date=birth.isoformat(), sex=rng.choice(("female", "male")),
                           postal_code=f"{rng.randrange(10000, 99999)}", _person=person)
        return self.insured(patient, payer)

    def shared_patient(self, mrn: str, seen: dict[str, Any]) -> dict[str, Any]:
        """A person another practice of the MSO has seen, under this practice's MRN."""
        spec = self.spec
        payer = self.rng.choices(spec.payers, weights=[p.share for p in spec.payers])[0]
        patient = self.add("patient", mrn, identifiers=[{"system": f"urn:demo:{spec.slug}:mrn", "value": mrn,
                                                         "type": "MR"}],
                           **{k: seen[k] for k in ("family_name", "given_name", "birth_date", "sex", "postal_code",
                                                   "_person")})
        return self.insured(patient, payer)

    def insured(self, patient: dict[str, Any], payer: Payer) -> dict[str, Any]:
        rng, mrn = self.rng, patient["source_id"]
        self.add("coverage", f"{mrn}-1", patient_source_id=mrn, payer_name=payer.name, payer=payer.mso_payer,
                 financial_class=payer.mso_class, member_id=f"MBR{rng.randrange(10**8, 10**9)}", rank=1)
        patient["_payer"] = payer
        self.patients.append(patient)
        return patient

    def pick_patient(self, category: str) -> dict[str, Any]:
        if category in self.spec.new_categories or len(self.patients) < 20:
            return self.new_patient()
        return self.rng.choice(self.patients)

    # ------------------------------------------------------------ a day at the practice
    def working_day(self, day: dt.date) -> None:
        spec, rng = self.spec, self.rng
        season = spec.seasons[day.month - 1] * (1.0 + 0.04 * math.sin(day.toordinal() / 9.0))
        for npi, _family, _given in spec.providers:
            expected = spec.daily_visits * season * self.scale
            count = max(0, round(rng.gauss(expected, math.sqrt(expected))))
            location = rng.choice(spec.locations)[0]
            clock = dt.datetime.combine(day, dt.time(8, 0), tzinfo=spec.tz)
            closing = clock.replace(hour=17)
            if spec.slot_minutes:
                # the template is planned for a usual month, so slow months leave slots free
                planned = spec.daily_visits * self.scale * self.slots_per_visit() / rng.uniform(0.86, 0.97)
                closing = min(closing, clock + dt.timedelta(minutes=spec.slot_minutes * max(1, round(planned))))
                self.slots(npi, location, clock, closing)
            self.book_session(day, npi, location, clock, closing, count)

    def evening(self, day: dt.date) -> None:
        """An evening clinic on the last day of a month, 20:00 to 23:00 local: in UTC, these visits fall on
        the first day of the next month (the local calendar is the one that counts)."""
        spec, rng = self.spec, self.rng
        for npi, _family, _given in spec.providers:
            location = spec.locations[0][0]
            clock = dt.datetime.combine(day, dt.time(20, 0), tzinfo=spec.tz)
            closing = clock.replace(hour=23)
            if spec.slot_minutes:
                self.slots(npi, location, clock, closing)
            self.book_session(day, npi, location, clock, closing, rng.randint(1, 3))

    def book_session(self, day: dt.date, npi: str, location: str, clock: dt.datetime, closing: dt.datetime,
                     count: int) -> None:
        """Up to ``count`` visits one after another from ``clock``, none running past ``closing``."""
        spec, rng = self.spec, self.rng
        for _ in range(count):
            visit_type = rng.choices([v for v, _ in spec.visit_types], weights=[w for _, w in spec.visit_types])[0]
            if clock + dt.timedelta(minutes=visit_type.minutes) > closing:
                break
            self.appointment(day, npi, location, visit_type, clock)
            step = spec.slot_minutes or 15
            clock += dt.timedelta(minutes=math.ceil(visit_type.minutes / step) * step)

    def slots_per_visit(self) -> float:
        step = self.spec.slot_minutes
        return sum(math.ceil(v.minutes / step) * w for v, w in self.spec.visit_types)

    def slots(self, npi: str, location: str, opening: dt.datetime, closing: dt.datetime) -> None:
        clock = opening
        while clock < closing:
            slot_id = f"S-{npi}-{clock:%Y%m%d%H%M}"
            self.slot_by_id[slot_id] = self.add("slot", slot_id, provider_source_id=npi, location_source_id=location,
                     start=clock.isoformat(), duration_min=self.spec.slot_minutes, status="free")
            clock += dt.timedelta(minutes=self.spec.slot_minutes)

    def appointment(self, day: dt.date, npi: str, location: str, vt: VisitType, start: dt.datetime) -> None:
        spec, rng = self.spec, self.rng
        patient = self.pick_patient(vt.category)
        mrn = patient["source_id"]
        new_patient = mrn not in self.seen
        lead_days = rng.randint(2, 45) if vt.category != "procedure" else rng.randint(7, 60)
        booked_at = (start - dt.timedelta(days=lead_days, hours=rng.randint(0, 8))).replace(second=0)
        referral_id = None
        if new_patient and rng.random() < spec.referral_share:
            referral_id = self.next_id("R")
            # history starts on self.start: an earlier referral is dated its first day
            received = max((booked_at - dt.timedelta(days=rng.randint(1, 10))).date(), self.start)
            self.add("referral", referral_id, patient_source_id=mrn,
                     referring_provider=f"{rng.choice(FAMILY_NAMES)} {rng.choice(FIRST_NAMES)} MD",
                     specialty=spec.specialty, service_line=vt.service_line, received_on=received.isoformat(),
                     status="completed")
        roll = rng.random()
        status = "fulfilled"
        cancelled_at = cancel_reason = cancel_category = None
        if roll < spec.cancel:
            status = "cancelled"
            late = rng.random() < spec.late_cancel_share
            hours = rng.randint(1, 23) if late else rng.randint(25, 24 * min(lead_days, 10))
            cancelled_at = max(start - dt.timedelta(hours=hours), booked_at + dt.timedelta(hours=1))
            code, cancel_category, _ = rng.choices(spec.cancel_reasons, weights=[c[2] for c in spec.cancel_reasons])[0]
            cancel_reason = code
        elif roll < spec.cancel + spec.no_show:
            status = "noshow"
        appointment_id = self.next_id("A")
        mapped = vt.code not in spec.unmapped_visit_types
        slot_ids = []
        if spec.slot_minutes:
            for n in range(math.ceil(vt.minutes / spec.slot_minutes)):
                slot_start = start + dt.timedelta(minutes=n * spec.slot_minutes)
                slot_ids.append(f"S-{npi}-{slot_start:%Y%m%d%H%M}")
            if status != "cancelled":  # a cancelled visit gives its slots back
                for slot_id in slot_ids:
                    self.slot_by_id[slot_id]["status"] = "busy"
        appointment = self.add(
            "appointment", appointment_id, patient_source_id=mrn, provider_source_id=npi, provider_npi=npi,
            location_source_id=location, mso_location=dict((c, m) for c, _, m in spec.locations)[location],
            start=start.isoformat(), duration_min=vt.minutes, visit_type=vt.code,
            visit_category=vt.category if mapped else None, service_line=vt.service_line if mapped else None,
            status=status, cancel_reason=cancel_reason, cancel_category=cancel_category,
            cancelled_at=cancelled_at.isoformat() if cancelled_at else None, booked_at=booked_at.isoformat(),
            referral_source_id=referral_id, new_patient=new_patient)
        appointment["_slots"] = slot_ids
        appointment["_visit_name"] = vt.name
        # when the appointment took its final status (marked done or missed 30 minutes after the visit's end):
        # the time a system writing one record per appointment stamps it with
        final = cancelled_at if cancelled_at else (
            start + dt.timedelta(minutes=vt.minutes + 30) if status in ("fulfilled", "noshow") else booked_at)
        appointment["_final_at"] = final.isoformat()
        if status != "fulfilled":
            return
        self.seen.add(mrn)
        end = start + dt.timedelta(minutes=vt.minutes)
        # the visit number is the appointment's id, as in many practice systems: an HL7 v2 DFT names only its
        # visit (PV1-19), and its charges find their service line through the appointment of that number
        encounter_id = appointment_id
        self.add("encounter", encounter_id, patient_source_id=mrn, provider_source_id=npi,
                 appointment_source_id=appointment_id, location_source_id=location, start=start.isoformat(),
                 end=end.isoformat(), status="finished", visit_type=vt.code,
                 visit_category=vt.category if mapped else None, service_line=vt.service_line if mapped else None)
        self.charges(day, patient, npi, location, vt, encounter_id, mapped)

    def charges(self, day: dt.date, patient: dict[str, Any], npi: str, location: str, vt: VisitType,
                encounter_id: str, mapped: bool) -> None:
        rng = self.rng
        payer: Payer = patient["_payer"]
        posted = day + dt.timedelta(days=rng.randint(0, 3) if payer.financial_class != "self_pay" else 0)
        if posted >= self.end:
            return  # not posted yet: the practice's billing system has not sent it
        diagnosis = [rng.choice(("L57.0", "L82.1", "D48.5", "L70.0", "M54.5", "M25.561", "L81.4"))]
        for line, (cpt, price) in enumerate(vt.procedures, start=1):
            units = rng.randint(1, 3) if cpt.startswith("97") else 1
            amount = Decimal(price) * units
            charge_id = f"{encounter_id}-{line}"
            self.add("charge", charge_id, encounter_source_id=encounter_id, patient_source_id=patient["source_id"],
                     provider_source_id=npi, location_source_id=location, service_date=day.isoformat(),
                     posted_on=posted.isoformat(), procedure_code=cpt, modifiers=["25"] if line == 1 and
                     len(vt.procedures) > 1 and cpt.startswith("992") else [], units=units, amount=_money(amount),
                     diagnosis_codes=diagnosis, payer_name=payer.name, payer=payer.mso_payer,
                     financial_class=payer.mso_class, visit_type=vt.code,
                     service_line=vt.service_line if mapped else None)
            self.remittance(charge_id, day, payer, amount)

    def remittance(self, charge_id: str, day: dt.date, payer: Payer, amount: Decimal) -> None:
        rng = self.rng
        paid_on = day + dt.timedelta(days=rng.randint(*payer.days))
        if paid_on >= self.end:
            return  # still in accounts receivable
        denied = rng.random() < payer.denial
        if denied:
            paid = Decimal("0.00")
            adjustments = [{"group": "CO", "reason": rng.choice(("16", "50", "197")), "amount": _money(amount)}]
        else:
            paid = (amount * Decimal(str(payer.allowed))).quantize(Decimal("0.01"))
            adjustments = [] if paid == amount else [{"group": "CO", "reason": "45", "amount": _money(amount - paid)}]
        adjustment = sum((Decimal(a["amount"]) for a in adjustments), Decimal("0.00"))
        self.add("remittance", f"P{charge_id[1:]}", charge_source_id=charge_id, claim_id=charge_id.rsplit("-", 1)[0],
                 payer_name=payer.name, payer=payer.mso_payer, paid_amount=_money(paid),
                 adjustment_amount=_money(adjustment), adjustments=adjustments, denied=denied,
                 paid_on=paid_on.isoformat())


def public(record: dict[str, Any]) -> dict[str, Any]:
    """The record without the generator's private helpers (keys starting with ``_``)."""
    return {k: v for k, v in record.items() if not k.startswith("_")}
