"""report rollups

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 12:55:00

The tables are declared as they were at this revision (rollups by month; retention by month
only), here and in ``hub/store/migrations/frozen.py``, so the migration does not change when the report code does. The rollups are not
computed here: every (practice, month) the base tables hold records in is marked dirty, and
the next report (or ``hub report refresh``) recomputes them with the code of its own time.
"""

import sqlalchemy as sa
from alembic import op

from hub.store.migrations.frozen import create_report_rollups, mark_every_cell

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# (name, table, columns): the base tables read by practice and date when a cell is recomputed
BASE_INDEXES = (
    ("ix_appointments_practice_start", "appointments", ["practice", "start"]),
    ("ix_appointments_practice_referral", "appointments", ["practice", "referral_source_id"]),
    ("ix_encounters_practice_start", "encounters", ["practice", "start"]),
    ("ix_charges_practice_service_date", "charges", ["practice", "service_date"]),
    ("ix_remittances_practice_charge", "remittances", ["practice", "charge_source_id"]),
    ("ix_slots_practice_start", "slots", ["practice", "start"]),
    ("ix_referrals_practice_received", "referrals", ["practice", "received_on"]),
)
def upgrade() -> None:
    op.create_table(
        "report_dirty",
        sa.Column("practice", sa.String(64), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.PrimaryKeyConstraint("practice", "month", name="pk_report_dirty"))
    create_report_rollups(weeks=False)
    op.create_table(
        "report_visits",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("practice", sa.String(64), nullable=False),
        sa.Column("source_id", sa.String(255), nullable=False),
        sa.Column("patient_key", sa.String(300), nullable=False),
        sa.Column("location", sa.String(255), nullable=False),
        sa.Column("provider", sa.String(255), nullable=False),
        sa.Column("service_line", sa.String(255), nullable=False),
        sa.Column("visit_category", sa.String(255), nullable=False),
        sa.Column("visit_date", sa.String(10), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("is_new", sa.Boolean(), nullable=False),
        sa.Column("converted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_report_visits"),
        sa.UniqueConstraint("practice", "kind", "source_id", name="uq_report_visits_practice_kind_source_id"))
    op.create_index("ix_report_visits_practice_month", "report_visits", ["practice", "month"])
    op.create_index("ix_report_visits_patient_key", "report_visits", ["patient_key"])
    op.create_table(
        "report_costs",
        sa.Column("practice", sa.String(64), nullable=False),
        sa.Column("service_line", sa.String(255), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("cost_cents", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("practice", "service_line", "month", name="pk_report_costs"))
    for name, table, columns in BASE_INDEXES:
        op.create_index(name, table, columns)
    # a store that already holds records gets its rollups at the next report, not at the next batch
    mark_every_cell(op.get_bind())


def downgrade() -> None:
    for name, table, _columns in reversed(BASE_INDEXES):
        op.drop_index(name, table_name=table)
    for table in ("report_medians", "report_costs", "report_visits", "report_retention", "report_credits",
                  "report_hist", "report_cells", "report_dirty"):
        op.drop_table(table)
