"""report freshness: each dirty rollup cell keeps when it was first marked

Revision ID: 0014
Revises: 0013

``report_dirty.marked_at`` is the time (UTC, ISO 8601 text) of the oldest change of a
(practice, month) cell that the rollups do not reflect yet; a report states its figures
``as of`` the oldest such time. Cells marked before this revision take the upgrade's time.
"""

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("report_dirty") as batch:
        batch.add_column(sa.Column("marked_at", sa.String(32), nullable=True))
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    op.get_bind().execute(sa.text("UPDATE report_dirty SET marked_at = :now"), {"now": now})


def downgrade() -> None:
    with op.batch_alter_table("report_dirty") as batch:
        batch.drop_column("marked_at")
