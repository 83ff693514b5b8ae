"""report rollups

Revision ID: 0004
Revises: 0005
Create Date: 2026-11-24 12:55:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    from hub.reports.tables import BASE_INDEXES, REPORT_TABLES

    bind = op.get_bind()
    for table in REPORT_TABLES:
        table.create(bind)
    for index in BASE_INDEXES:
        index.create(bind)
    # a store that already holds records gets its rollups now, not at the next batch
    from hub.reports.rollups import rebuild_all

    rebuild_all(bind)


def downgrade() -> None:
    from hub.reports.tables import BASE_INDEXES, REPORT_TABLES

    bind = op.get_bind()
    for index in BASE_INDEXES:
        index.drop(bind)
    for table in reversed(REPORT_TABLES):
        sa.Table(table.name, sa.MetaData()).drop(bind, checkfirst=True)
