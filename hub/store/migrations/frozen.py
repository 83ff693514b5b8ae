"""Shapes and steps the revisions share, frozen as of the revisions that use them.

A revision must not change when the live code does, so nothing here imports the hub. What is
here is history: once a released revision calls a function, the function stays as it is; a
later shape gets a new name (as ``report_rollups`` takes the ISO week as a flag for 0007).
"""

import sqlalchemy as sa
from alembic import op

# report rollups as of 0004, kept by 0007
DIMS = ("practice", "location", "provider", "service_line", "financial_class")
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
)
# (table, date column) of the records each rollup cell is made of, as of 0004 to this day
CELL_SOURCES = (("appointments", "start"), ("encounters", "start"), ("charges", "service_date"),
                ("referrals", "received_on"), ("report_costs", "month"))
SLOT_LOOKAHEAD_MONTHS = 3  # a slot counts towards "third next available" of the months up to 90 days before it


def create_report_rollups(weeks: bool) -> None:
    """The rollup tables: 0004's shape (by month), or with ``weeks`` 0007's (the ISO week in the
    keys, retention by period kind)."""
    def dims() -> list[sa.Column]:
        return [sa.Column(d, sa.String(255), nullable=False) for d in DIMS]

    def week(name: str = "week") -> list[sa.Column]:
        return [sa.Column(name, sa.String(10), nullable=False)] if weeks else []

    def keyed(table: str, *columns: sa.Column, key: tuple[str, ...]) -> None:
        op.create_table(table, sa.Column("grain", sa.String(8), nullable=False), *dims(),
                        sa.Column("month", sa.String(7), nullable=False), *week(), *columns,
                        sa.PrimaryKeyConstraint("grain", *DIMS, "month", *wk, *key, name=f"pk_{table}"))
        op.create_index(f"ix_{table}_practice_month", table, ["practice", "month"])

    wk = ["week"] if weeks else []
    keyed("report_cells",
          *[sa.Column(m, sa.BigInteger(), nullable=False, server_default="0") for m in MEASURES], key=())
    keyed("report_hist", sa.Column("metric", sa.String(40), nullable=False),
          sa.Column("value", sa.Integer(), nullable=False), sa.Column("n", sa.BigInteger(), nullable=False),
          key=("metric", "value"))
    keyed("report_credits", sa.Column("paid_month", sa.String(7), nullable=False), *week("paid_week"),
          sa.Column("credits_cents", sa.BigInteger(), nullable=False),
          key=("paid_month", *(["paid_week"] if weeks else [])))
    period = ([sa.Column("period_kind", sa.String(8), nullable=False),
               sa.Column("period", sa.String(10), nullable=False)]
              if weeks else [sa.Column("month", sa.String(7), nullable=False)])
    op.create_table(
        "report_retention",
        sa.Column("practice", sa.String(64), nullable=False),
        sa.Column("service_line", sa.String(255), nullable=False),
        *period,
        sa.Column("cohort", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("retained", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("practice", "service_line", *[c.name for c in period], name="pk_report_retention"))
    op.create_table(
        "report_medians",
        sa.Column("grain", sa.String(8), nullable=False),
        sa.Column("practice", sa.String(64), nullable=False),
        sa.Column("service_line", sa.String(255), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        *week(),
        sa.Column("metric", sa.String(40), nullable=False),
        sa.Column("median", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("grain", "practice", "service_line", "month", *wk, "metric", name="pk_report_medians"))


def _month_shift(month: str, delta: int) -> str:
    year, mon = divmod(int(month[:4]) * 12 + int(month[5:7]) - 1 + delta, 12)
    return f"{year:04d}-{mon + 1:02d}"


def mark_every_cell(bind: sa.Connection) -> None:
    """Mark dirty every (practice, month) the base tables hold records in, by plain SQL, so the
    next report (or ``hub report refresh``) recomputes the rollups with the code of its time."""
    def months(table: str, column: str) -> set[tuple[str, str]]:
        rows = bind.execute(sa.text(f"SELECT DISTINCT practice, substr(CAST({column} AS VARCHAR), 1, 7) "
                                    f"FROM {table}"))
        return {(p, m) for p, m in rows if m}

    cells: set[tuple[str, str]] = set()
    for table, column in CELL_SOURCES:
        cells |= months(table, column)
    for practice, month in months("slots", "start"):
        cells.update((practice, _month_shift(month, -k)) for k in range(SLOT_LOOKAHEAD_MONTHS + 1))
    bind.execute(sa.text("DELETE FROM report_dirty"))
    if cells:
        bind.execute(sa.text("INSERT INTO report_dirty (practice, month) VALUES (:p, :m)"),
                     [{"p": p, "m": m} for p, m in sorted(cells)])
