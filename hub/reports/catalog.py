"""The KPI catalog: every figure the report prints, with what it means and where it comes from.

Each KPI is data (id, name, unit, numerator and denominator in words, formula, the
record kinds it reads, its published source where one exists) plus ``compute``, a
function of one slice's aggregated figures (``hub.reports.figures.Figures``). The
built-in catalog registers through the ``hub_register_kpis`` hook like any plugin
KPI does (the essential plugin ``kpis``, always registered); a plugin KPI is one more
``Kpi`` whose ``compute`` combines the same rollup measures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hub import hookimpl
from hub.model.kinds import FINANCIAL_CLASS

if TYPE_CHECKING:
    from hub.plugins import KpiRegistry
    from hub.reports.figures import Figures

UNITS = ("count", "ratio", "usd", "days", "minutes", "rvu")  # rvu: work relative value units, two places


@dataclass(frozen=True)
class Kpi:
    id: str
    name: str
    unit: str
    numerator: str
    denominator: str | None
    formula: str
    source_kinds: tuple[str, ...]
    compute: Callable[[Figures], Any] = field(repr=False, compare=False)
    source: str | None = None
    higher_is_better: bool | None = None
    note: str | None = None
    # "kind.field"s it cannot do without, beyond its source kinds: a site whose records of that kind never
    # carry the field (its feed has no place for it, ``Connector.cannot_carry``) has no figure
    source_fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"KPI {self.id!r}: unit must be one of {', '.join(UNITS)}")

    def definition(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "unit": self.unit, "numerator": self.numerator,
                "denominator": self.denominator, "formula": self.formula, "source_kinds": list(self.source_kinds),
                "source": self.source, "higher_is_better": self.higher_is_better, "note": self.note,
                "source_fields": list(self.source_fields)}


MGMA = "MGMA (Medical Group Management Association) DataDive / Cost and Revenue survey definitions"
HFMA = "HFMA MAP Keys (Healthcare Financial Management Association)"
IHI = "IHI (Institute for Healthcare Improvement): third next available appointment"
CMS_PFS = "CMS Medicare Physician Fee Schedule, PFS Relative Value Files (PPRRVU: WORK RVU by HCPCS and MOD)"

VISIT = ("completed appointments (fulfilled, arrived, checked-in) plus finished encounters not tied to a completed "
         "appointment")
NO_DENIALS = ("no data for a site whose remittances never say which lines were denied: HL7 v2 payment postings, "
              "an export without a denied column")
# margin sets costs against the payments of the same site, service line and month, so lines add up to sites
MARGIN_NOTE = ("over the site × service line × months whose costs were imported (payments elsewhere, unattributed "
               "ones included, are in no margin); by site, service line and month (or quarter, year) only; not by "
               "week")
SCHEDULED = "appointments booked for the period (booked, arrived, checked-in, fulfilled, noshow, cancelled)"


def _builtin() -> list[Kpi]:
    k: list[Kpi] = [
        Kpi("visit_volume", "Visit volume", "count", VISIT, None, "count(visits)",
            ("appointment", "encounter"), lambda f: f.count("visits"), MGMA, True),
        Kpi("new_patient_visits", "New-patient visits", "count",
            "visits of patients with no visit in the same service line anywhere in the MSO in the 3 years before",
            None, "count(visits where new)", ("appointment", "encounter", "patient"),
            lambda f: f.count("new_visits"), MGMA, True,
            "patients are linked across sites by the patient index (enterprise ids, docs/identity.md); "
            "service line stands for specialty"),
        Kpi("new_patient_share", "New-patient share", "ratio", "new-patient visits", "visits",
            "new_visits / visits", ("appointment", "encounter", "patient"),
            lambda f: f.ratio("new_visits", "visits"), MGMA, None),
        Kpi("no_show_rate", "No-show rate", "ratio", "appointments with status noshow", SCHEDULED,
            "noshow / scheduled", ("appointment",), lambda f: f.ratio("appts_noshow", "appts_scheduled"),
            MGMA, False),
        Kpi("cancellation_rate", "Cancellation rate", "ratio", "cancelled appointments", SCHEDULED,
            "cancelled / scheduled", ("appointment",), lambda f: f.ratio("appts_cancelled", "appts_scheduled"),
            None, False),
        Kpi("late_cancellation_rate", "Late cancellation rate", "ratio",
            "appointments cancelled less than 24 hours before their start (cancelled_at vs start)", SCHEDULED,
            "late_cancelled / scheduled", ("appointment",),
            lambda f: f.ratio("appts_late_cancelled", "appts_scheduled"), None, False),
        Kpi("schedule_utilization", "Schedule utilization", "ratio",
            "booked minutes (duration of booked, arrived, checked-in, fulfilled and noshow appointments) "
            "at sites that publish slots",
            "available minutes (duration of free and busy slots)", "booked_minutes / available_minutes",
            ("appointment", "slot"), lambda f: f.ratio("booked_minutes", "available_minutes"), None, True),
        Kpi("lead_time_days", "Lead time (median)", "days", "days from booking to appointment start", None,
            "median(date(start) - date(booked_at)) over scheduled appointments with booked_at",
            ("appointment",), lambda f: f.median("lead_days"), None, False),
        Kpi("third_next_available_days", "Days to third next available (median)", "days",
            "days from the first of the month (for a week, from its Monday) to the third free slot on or after "
            "it (within 90 days), per provider, location and service line", None, "median over providers", ("slot",),
            lambda f: f.median("third_available_days"), IHI, False,
            "uses the slots' current status; null where the feeds send no slots"),
        Kpi("referrals_received", "Referrals received", "count", "referrals received in the period", None,
            "count(referrals by received_on)", ("referral",), lambda f: f.count("referrals_received"), None, True),
        Kpi("referral_scheduled_rate", "Referrals scheduled", "ratio",
            "referrals with at least one appointment linked by referral_source_id", "referrals received",
            "scheduled / received", ("referral", "appointment"),
            lambda f: f.ratio("referrals_scheduled", "referrals_received"), None, True),
        Kpi("referral_attended_rate", "Referrals attended", "ratio",
            "referrals with at least one completed appointment linked", "referrals received",
            "attended / received", ("referral", "appointment"),
            lambda f: f.ratio("referrals_attended", "referrals_received"), None, True),
        Kpi("referral_to_scheduled_days", "Referral to scheduled (median)", "days",
            "days from received_on to the start of the first linked appointment", None, "median",
            ("referral", "appointment"), lambda f: f.median("referral_to_scheduled_days"), None, False),
        Kpi("referral_to_attended_days", "Referral to attended (median)", "days",
            "days from received_on to the first completed linked appointment", None, "median",
            ("referral", "appointment"), lambda f: f.median("referral_to_attended_days"), None, False),
        Kpi("cosmetic_consult_conversion", "Cosmetic consult conversion", "ratio",
            "cosmetic consult visits followed by a cosmetic procedure visit of the same patient within 90 days",
            "cosmetic consult visits", "converted / consults", ("appointment", "encounter"),
            lambda f: f.ratio("consults_cosmetic_converted", "consults_cosmetic"), None, True,
            "visit_category consult / procedure, service_line cosmetic_aesthetics"),
        Kpi("patient_retention", "Patient retention", "ratio",
            "patients seen in the 12 months before the period who were seen again in it",
            "patients seen in the 12 months before the period (before a week: the 52 weeks before it)",
            "retained / cohort", ("appointment", "encounter", "patient"), lambda f: f.retention(), None, True,
            "distinct patients: reported by month, quarter, year or week, alone or by site and/or service line; "
            "null for other slicings"),
        Kpi("gross_charges", "Gross charges", "usd", "sum of charge amounts by service date", None, "sum(amount)",
            ("charge",), lambda f: f.usd("charges_cents"), MGMA, True),
        Kpi("payments", "Payments", "usd", "payments on the period's charges (by the charge's service month)",
            None, "sum(paid_amount)", ("remittance", "charge"), lambda f: f.usd("payments_cents"), MGMA, True),
        Kpi("adjustments", "Adjustments", "usd", "adjustments on the period's charges", None,
            "sum(adjustment_amount)", ("remittance", "charge"), lambda f: f.usd("adjustments_cents"), None, None),
        Kpi("net_collection_rate", "Net collection rate", "ratio", "payments",
            "gross charges minus contractual adjustments (CARC group CO)", "payments / (charges - contractual)",
            ("remittance", "charge"), lambda f: f.net_collection(), MGMA + " (adjusted collection rate)", True),
        Kpi("denial_rate", "Denial rate", "ratio", "denied remittance lines", "adjudicated remittance lines",
            "denied_lines / adjudicated_lines", ("remittance", "charge"),
            lambda f: f.ratio("denied_lines", "remit_lines"), HFMA + " (initial denial rate)", False,
            NO_DENIALS, source_fields=("remittance.denied",)),
        Kpi("denial_rate_usd", "Denial rate (dollars)", "ratio", "charge amount of denied lines",
            "charge amount of adjudicated lines", "denied_usd / adjudicated_usd", ("remittance", "charge"),
            lambda f: f.ratio("denied_cents", "adjudicated_cents"), None, False, NO_DENIALS,
            source_fields=("remittance.denied",)),
        Kpi("days_in_ar", "Days in A/R", "days", "A/R at the end of the month or week (charges less credits posted)",
            "average daily charges over the last 90 days (the month and the two before, by calendar days; "
            "for a week, the week and the 12 before: 91 days)",
            "ar / (charges_3_months / days_3_months)", ("charge", "remittance"), lambda f: f.days_in_ar(),
            HFMA + " (days in accounts receivable)", False,
            "as of the end of the period, or of the range when no period is asked"),
        Kpi("ar_over_90_share", "A/R over 90 days", "ratio",
            "A/R on charges with a service month three or more months before the month (for a week: a service "
            "week 13 or more weeks before it)", "A/R",
            "ar_aged / ar", ("charge", "remittance"), lambda f: f.ar_over_90(),
            HFMA + " (aged A/R as a percentage of total A/R)", False,
            "aged by whole service months (by week: whole service weeks)"),
        Kpi("charges_per_visit", "Charges per visit", "usd", "gross charges", "visits",
            "charges / visits", ("charge", "appointment", "encounter"), lambda f: f.usd_per("charges_cents", "visits"),
            MGMA, True),
        Kpi("payments_per_visit", "Payments per visit", "usd", "payments", "visits", "payments / visits",
            ("remittance", "appointment", "encounter"), lambda f: f.usd_per("payments_cents", "visits"), MGMA, True),
        Kpi("charge_lag_days", "Charge lag (mean)", "days", "days from service date to posting date",
            "charges with a posting date", "sum(posted_on - service_date) / count", ("charge",),
            lambda f: f.mean("charge_lag_days", "charges_posted"), None, False),
        Kpi("work_rvus", "Work RVUs", "rvu",
            "work RVUs of the charge lines by service date: each line's procedure code (with a modifier it names when "
            "the RVU table has that row, else the code's base row) in the imported schedule of the latest effective "
            "year on or before the service year, times units", None, "sum(work_rvu(code, modifier, year) * units)",
            ("charge", "rvus"), lambda f: f.rvus("work_rvu_milli"), CMS_PFS, True,
            "the RVU table is imported by the MSO (hub rvu import); a line whose code has no row in it counts 0 "
            "and is unpriced (hub rvu unpriced lists them); a site none of whose lines is priced has no figure"),
        Kpi("work_rvus_per_visit", "Work RVUs per visit", "rvu", "work RVUs", "visits", "work_rvus / visits",
            ("charge", "rvus", "appointment", "encounter"), lambda f: f.rvus_per("work_rvu_milli", "visits"),
            CMS_PFS + "; " + MGMA, True),
        Kpi("costs", "Costs", "usd", "costs the MSO imported (hub costs import)", None, "sum(cost)", ("costs",),
            lambda f: f.costs(), None, False, "by site, service line and month (or quarter, year) only; not by week"),
        Kpi("margin", "Margin", "usd", "payments minus costs", None, "payments - costs", ("remittance", "costs"),
            lambda f: f.margin(), None, True, MARGIN_NOTE),
        Kpi("margin_rate", "Margin rate", "ratio", "payments minus costs", "payments",
            "(payments - costs) / payments", ("remittance", "costs"), lambda f: f.margin_rate(), None, True,
            MARGIN_NOTE),
    ]
    for fc in (*FINANCIAL_CLASS, "unknown"):
        label = fc.replace("_", " ")
        k.append(Kpi(f"payer_mix_{fc}", f"Payer mix: {label}", "ratio",
                     f"gross charges with financial class {fc}" if fc != "unknown"
                     else "gross charges without a financial class", "gross charges",
                     f"charges[{fc}] / charges", ("charge",),
                     _payer_share(f"charges_{fc}_cents"), MGMA, None))
    return k


def _payer_share(measure: str) -> Callable[[Figures], Any]:
    return lambda f: f.ratio(measure, "charges_cents")


BUILTIN_KPIS = _builtin()


@hookimpl
def hub_register_kpis(registry: KpiRegistry) -> None:
    for kpi in BUILTIN_KPIS:
        registry.add(kpi)
