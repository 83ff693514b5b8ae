"""Which of a report's periods are complete, and which of their figures are still maturing.

"Today" is the clock's date where the sites are: the earliest local date among the practices' zones
(UTC when no practice names one), so a month counts as complete only once every site has finished it.
``compute_report(today=...)`` takes another date (tests, a packet for a past month).

A period is ``complete`` when its last day is before today, ``in_progress`` when today falls in it and
``future`` when it starts after today (only an explicit ``to`` reaches one: the default span ends with
the current period, whatever appointments are booked beyond it). An in-progress period's figures are
its period to date. The month in progress is compared with the same days of the month before
(``comparison`` basis ``same_days``, and each of its rows carries a ``compare``), which the refresh
keeps for the current day (``hub.reports.same_days``); an in-progress week, quarter or year is marked
not comparable rather than compared with a whole period.

Some inputs arrive weeks after the service: remittances (payments, adjustments, denials) and the
appointments a referral leads to. A KPI that reads them is ``maturing`` for a period that ended less
than its lag before today: its figure is expected to rise.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from hub.model.tables import practices

REMITTANCE_LAG_DAYS = 90  # most payers adjudicate within 90 days of the claim
REFERRAL_LAG_DAYS = 60  # a referral's first appointment is typically booked and held within two months
REFERRAL_OUTCOMES = ("referral_scheduled_rate", "referral_attended_rate", "referral_to_scheduled_days",
                     "referral_to_attended_days")


def today_at_sites(conn: sa.Connection, now: dt.datetime | None = None) -> dt.date:
    """The earliest local date among the practices' zones at ``now`` (the clock by default)."""
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    days = set()
    for (name,) in conn.execute(sa.select(practices.c.timezone).distinct()):
        try:
            days.add(moment.astimezone(ZoneInfo(name)).date() if name else moment.date())
        except (ZoneInfoNotFoundError, ValueError, OSError):  # the practice commands refuse these: stay quiet
            days.add(moment.date())
    return min(days) if days else moment.date()


def lag_days(kpi: Any) -> int:
    """How long after a period a KPI's inputs keep arriving (0: none)."""
    if "remittance" in kpi.source_kinds:
        return REMITTANCE_LAG_DAYS
    if kpi.id in REFERRAL_OUTCOMES:
        return REFERRAL_LAG_DAYS
    return 0


def bounds(name: str, kind: str) -> tuple[dt.date, dt.date]:
    """First and last day of a period as the report names it ("2025-03", "2025-Q1", "2025", "2025-W09")."""
    if kind == "week":
        year, week = int(name[:4]), int(name[6:])
        monday = dt.date.fromisocalendar(year, week, 1)
        return monday, monday + dt.timedelta(days=6)
    if kind == "year":
        return dt.date(int(name), 1, 1), dt.date(int(name), 12, 31)
    if kind == "quarter":
        first_month = (int(name[-1]) - 1) * 3 + 1
        year = int(name[:4])
        last_month = first_month + 2
        return dt.date(year, first_month, 1), dt.date(year, last_month, calendar.monthrange(year, last_month)[1])
    year, month = int(name[:4]), int(name[5:7])
    return dt.date(year, month, 1), dt.date(year, month, calendar.monthrange(year, month)[1])


def describe(names: Iterable[str], kind: str, today: dt.date, catalog: list[Any],
             same_days: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One entry per period: its days, whether it is complete, how it compares and which KPIs are maturing.

    ``same_days``: the comparison of the month in progress with the same days of the month before."""
    out = []
    for name in sorted(set(names)):
        first, last = bounds(name, kind)
        state = "complete" if last < today else ("future" if first > today else "in_progress")
        entry: dict[str, Any] = {"period": name, "first_day": first.isoformat(), "last_day": last.isoformat(),
                                 "complete": state == "complete", "state": state}
        if state == "in_progress":
            entry["through"] = today.isoformat()
            entry["comparison"] = same_days if kind == "month" and same_days is not None else {
                "comparable": False, "basis": "period_to_date",
                "reason": f"{kind} to date ({first.isoformat()} to {today.isoformat()}): the figures are kept by whole "
                          f"{kind}, so the same days of the prior {kind} are not available to compare against"}
        elif state == "future":
            entry["comparison"] = {"comparable": False, "basis": "future",
                                   "reason": "the period has not started: only bookings are counted"}
        else:
            entry["comparison"] = {"comparable": True, "basis": "whole_period"}
        age = (today - last).days
        entry["maturing"] = [k.id for k in catalog if lag_days(k) and age < lag_days(k)]
        out.append(entry)
    return out


def default_period(periods: list[dict[str, Any]]) -> str | None:
    """The period a view opens on: the last complete one (else the earliest there is)."""
    complete = [p["period"] for p in periods if p["complete"]]
    if complete:
        return complete[-1]
    return periods[0]["period"] if periods else None
