"""The report rollups: aggregates kept up to date as each ingest batch lands.

Every table here holds aggregates only (counts, sums of cents, histograms of whole
days), except ``report_visits``, the one derived row per visit that lets new-patient,
consult-conversion and retention figures be recomputed exactly for the patients a
batch touched. It holds an opaque patient key, never a name or identifier, and is
never read by a report except through the aggregates. (The indexes the recomputing reads the
base tables by live with those tables, in ``hub.model.tables``.)

Three grains of cells, histograms and credits: ``fine`` (practice × location × provider ×
service line × financial class × month × week; tables of their own, ``report_fine_*``),
``site`` (practice × service line × month, the others ``*`` and the week ``''``) and
``siteweek`` (practice × service line × month × week). The engine reads the coarsest
grain that answers a request, so the common "by site and month" (or week) query reads
few rows whatever the data size. A dimension a record does not carry is stored as ``''``
(shown as null).

``week`` is the Monday (ISO week start, ``YYYY-MM-DD``) of the record's date; rows are
still recomputed per (practice, month), so a week that straddles two months has rows in
both month cells: a month's figure sums its rows over weeks, a week's sums its rows over
months. Rows tied to a month but to no day (imported costs) have the week ``''``.

One more grain of ``report_cells`` and ``report_hist``, ``samedays``: the prior month's figures
through today's day of the month and the current month's through today, at the fine detail, for the
comparison of the month in progress; there ``week`` holds the last day counted (``hub.reports.same_days``).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hub.model.tables import BigId, metadata

DIMS = ("practice", "location", "provider", "service_line", "financial_class")
SITE_WEEK_GRAIN = "siteweek"  # the site grain by week (the "site" grain is by month only)

# additive measures of one cell (integers: counts, cents, minutes, day sums)
MEASURES = (
    "visits", "new_visits", "consults_cosmetic", "consults_cosmetic_converted",
    "appts_scheduled", "appts_noshow", "appts_cancelled", "appts_late_cancelled",
    "booked_minutes", "available_minutes",
    "referrals_received", "referrals_scheduled", "referrals_attended",
    "charge_lines", "charges_cents", "charges_posted", "charge_lag_days",
    "payments_cents", "adjustments_cents", "contractual_cents",
    "remit_lines", "denied_lines", "adjudicated_cents", "denied_cents",
    "costs_cents", "cost_cells",
    "charges_commercial_cents", "charges_medicare_cents", "charges_medicaid_cents",
    "charges_self_pay_cents", "charges_other_cents", "charges_unknown_cents",
    # work RVUs (hub.reports.rvus): thousandths of an RVU times units, and the charge lines that found an RVU row
    "work_rvu_milli", "rvu_lines",
)

# histograms of whole days, for exact medians over any combination of cells
HIST_METRICS = ("lead_days", "referral_to_scheduled_days", "referral_to_attended_days", "third_available_days")
# third next available measured from each Monday (a week's figure) rather than from the first of the month:
# only week reports read it, the others leave it out
WEEKLY_THIRD_AVAILABLE = "third_available_days_weekly"


def _dims() -> list[sa.Column[str]]:
    return [sa.Column(d, sa.String(255), nullable=False) for d in DIMS]


def _week(name: str = "week") -> sa.Column[str]:
    return sa.Column(name, sa.String(10), nullable=False, doc="Monday of the ISO week, or '' for none")


report_cells = sa.Table(
    "report_cells", metadata,
    sa.Column("grain", sa.String(8), nullable=False),
    *_dims(),
    sa.Column("month", sa.String(7), nullable=False),
    _week(),
    *[sa.Column(m, sa.BigInteger(), nullable=False, server_default="0") for m in MEASURES],
    sa.PrimaryKeyConstraint("grain", *DIMS, "month", "week", name="pk_report_cells"),
    sa.Index("ix_report_cells_practice_month", "practice", "month"),  # a batch recomputes one practice's months
)

report_hist = sa.Table(
    "report_hist", metadata,
    sa.Column("grain", sa.String(8), nullable=False),
    *_dims(),
    sa.Column("month", sa.String(7), nullable=False),
    _week(),
    sa.Column("metric", sa.String(40), nullable=False),
    sa.Column("value", sa.Integer(), nullable=False),
    sa.Column("n", sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint("grain", *DIMS, "month", "week", "metric", "value", name="pk_report_hist"),
    sa.Index("ix_report_hist_practice_month", "practice", "month"),
)

# credits (payments + adjustments) posted, by the charge's cell and the month and week they were posted:
# the A/R balance at any month or week end, and its age, come from here and the charges.
report_credits = sa.Table(
    "report_credits", metadata,
    sa.Column("grain", sa.String(8), nullable=False),
    *_dims(),
    sa.Column("month", sa.String(7), nullable=False, doc="service month of the charge"),
    _week(),
    sa.Column("paid_month", sa.String(7), nullable=False),
    _week("paid_week"),
    sa.Column("credits_cents", sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint("grain", *DIMS, "month", "week", "paid_month", "paid_week", name="pk_report_credits"),
    sa.Index("ix_report_credits_practice_month", "practice", "month"),
)

# The fine grain, apart from the coarse ones: one table each of cells, histograms and credits, rows only added and
# deleted by (practice, month), never updated, so they have no key. A fine row is about one record (the detail is
# that fine), so a key's upkeep was most of the cost of writing them, and regrouping the sources' rows into one
# row per key (each source its own measures) was most of the rest: here each source adds its own rows (the charges
# with their remittances), with only its own measures (the others NULL, which costs no space), and a reader sums
# them (``SUM`` skips NULLs) as it sums cells anyway. ``report_cells`` and its fellows keep the coarse grains
# (``site``, ``siteweek``, ``samedays``).
def _fine(name: str, *columns: sa.Column[Any]) -> sa.Table:
    return sa.Table(name, metadata, *_dims(), sa.Column("month", sa.String(7), nullable=False), _week(), *columns,
                    sa.Index(f"ix_{name}_practice_month", "practice", "month"))


report_fine_cells = _fine("report_fine_cells", *[sa.Column(m, sa.BigInteger(), nullable=True) for m in MEASURES])
report_fine_hist = _fine("report_fine_hist", sa.Column("metric", sa.String(40), nullable=False),
                         sa.Column("value", sa.Integer(), nullable=False),
                         sa.Column("n", sa.BigInteger(), nullable=False))
report_fine_credits = _fine("report_fine_credits", sa.Column("paid_month", sa.String(7), nullable=False),
                            _week("paid_week"), sa.Column("credits_cents", sa.BigInteger(), nullable=False))
FINE = {"cells": report_fine_cells, "hist": report_fine_hist, "credits": report_fine_credits}

# distinct-patient retention, kept by exact deltas for each scope ('*' = every practice / line) and each
# kind of period: period_kind 'month' (period "2025-03"), 'quarter' ("2025-Q1"), 'year' ("2025"), 'week'
# (the Monday, "2025-02-24")
report_retention = sa.Table(
    "report_retention", metadata,
    sa.Column("practice", sa.String(64), nullable=False),
    sa.Column("service_line", sa.String(255), nullable=False),
    sa.Column("period_kind", sa.String(8), nullable=False),
    sa.Column("period", sa.String(10), nullable=False),
    sa.Column("cohort", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("retained", sa.BigInteger(), nullable=False, server_default="0"),
    sa.PrimaryKeyConstraint("practice", "service_line", "period_kind", "period", name="pk_report_retention"),
)

report_visits = sa.Table(
    "report_visits", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("practice", sa.String(64), nullable=False),
    sa.Column("source_id", sa.String(255), nullable=False),
    sa.Column("patient_key", sa.String(300), nullable=False, doc="enterprise id, else practice:patient source id"),
    sa.Column("location", sa.String(255), nullable=False),
    sa.Column("provider", sa.String(255), nullable=False),
    sa.Column("service_line", sa.String(255), nullable=False),
    sa.Column("visit_category", sa.String(255), nullable=False),
    sa.Column("visit_date", sa.String(10), nullable=False),
    sa.Column("month", sa.String(7), nullable=False),
    sa.Column("is_new", sa.Boolean(), nullable=False),
    sa.Column("converted", sa.Boolean(), nullable=False),
    sa.UniqueConstraint("practice", "kind", "source_id"),
    sa.Index("ix_report_visits_practice_month", "practice", "month"),
    sa.Index("ix_report_visits_patient_key", "patient_key"),
)

# medians of the most asked-for slicings (by site and month or week, with or without service line): a
# month's row has the week '', a week's row the month ''
report_medians = sa.Table(
    "report_medians", metadata,
    sa.Column("grain", sa.String(8), nullable=False),
    sa.Column("practice", sa.String(64), nullable=False),
    sa.Column("service_line", sa.String(255), nullable=False),
    sa.Column("month", sa.String(7), nullable=False),
    _week(),
    sa.Column("metric", sa.String(40), nullable=False),
    sa.Column("median", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("grain", "practice", "service_line", "month", "week", "metric",
                            name="pk_report_medians"),
)

report_costs = sa.Table(
    "report_costs", metadata,
    sa.Column("practice", sa.String(64), nullable=False),
    sa.Column("service_line", sa.String(255), nullable=False),
    sa.Column("month", sa.String(7), nullable=False),
    sa.Column("cost_cents", sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint("practice", "service_line", "month", name="pk_report_costs"),
)

# The work RVUs the MSO imported (hub rvu import; hub.reports.rvus): one schedule per effective year, a row per
# procedure code and modifier ('' for the code's base row), the work RVU in thousandths (CMS publishes two places)
report_rvus = sa.Table(
    "report_rvus", metadata,
    sa.Column("year", sa.Integer(), nullable=False),
    sa.Column("code", sa.String(16), nullable=False),
    sa.Column("modifier", sa.String(8), nullable=False),
    sa.Column("work_milli", sa.Integer(), nullable=False),
    sa.Column("source", sa.String(255), nullable=False, doc="the file the row was imported from"),
    sa.PrimaryKeyConstraint("year", "code", "modifier", name="pk_report_rvus"),
)



def _cell_marks(name: str, marked_at: str) -> sa.Table:
    """A table of (practice, month) cells waiting for a refresh, each with the time of its first mark."""
    return sa.Table(
        name, metadata,
        sa.Column("practice", sa.String(64), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("marked_at", sa.String(32), nullable=True, doc=marked_at),
        sa.PrimaryKeyConstraint("practice", "month", name=f"pk_{name}"),
    )


# Cells an ingest batch touched whose rollups are not yet recomputed (see rollups.tracking), with the time
# of the first change not yet recomputed (UTC, ISO 8601 text that sorts as time: the figures' ``as_of``)
report_dirty = _cell_marks("report_dirty", "NULL: marked before times were kept (migration 0014)")

# Cells a PostgreSQL catch-up took from ``report_dirty`` and is recomputing (rollups.refresh_dirty): moved here in a
# short transaction of their own, so an ingest that marks one of them meanwhile inserts a fresh mark rather than
# waiting for the catch-up's long transaction; the catch-up deletes them with its commit. A row a crashed catch-up
# left is taken again by the next. Freshness and the background refresh count these as waiting.
report_refreshing = _cell_marks("report_refreshing", "the mark's time, as report_dirty kept it")

REPORT_TABLES = (report_dirty, report_refreshing, report_cells, report_hist, report_credits, report_fine_cells,
                 report_fine_hist, report_fine_credits, report_retention,
                 report_visits, report_costs,
                 report_medians)
