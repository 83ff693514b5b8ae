"""report refreshing: the cells a PostgreSQL catch-up took and is recomputing

Revision ID: 0018
Revises: 0017

A catch-up after a backfill recomputes many cells in one long transaction. It first moves
their marks from ``report_dirty`` to ``report_refreshing`` in a short transaction of its own,
so an ingest marking one of those cells meanwhile inserts a fresh mark instead of waiting for
the long transaction, and deletes them with its commit (``hub.reports.rollups``).
"""

import sqlalchemy as sa
from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_refreshing",
        sa.Column("practice", sa.String(64), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("marked_at", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("practice", "month", name="pk_report_refreshing"))


def downgrade() -> None:
    # a catch-up cut short left its cells here: they wait in report_dirty again
    op.get_bind().execute(sa.text(
        "INSERT INTO report_dirty (practice, month, marked_at) SELECT practice, month, marked_at "
        "FROM report_refreshing WHERE true ON CONFLICT (practice, month) DO NOTHING"))
    op.drop_table("report_refreshing")
