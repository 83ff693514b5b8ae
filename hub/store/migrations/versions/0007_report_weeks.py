"""report weeks: the rollups carry each record's ISO week; retention kept for every kind of period

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# the tables whose shape changes (a week column in the keys; retention by period kind)
RESHAPED = ("report_cells", "report_hist", "report_credits", "report_retention", "report_medians")
# kept as they are but refilled: retention deltas are only right against the visits they were counted from
REFILLED = ("report_visits", "report_dirty")


def upgrade() -> None:
    from hub.reports.rollups import rebuild_all
    from hub.reports.tables import REPORT_TABLES

    bind = op.get_bind()
    tables = {t.name: t for t in REPORT_TABLES}
    for name in RESHAPED:
        sa.Table(name, sa.MetaData()).drop(bind, checkfirst=True)
        tables[name].create(bind)
    for name in REFILLED:
        bind.execute(sa.delete(tables[name]))
    # imported costs (report_costs) stay; every figure is recomputed from the base tables
    rebuild_all(bind)


def _before(table: sa.Table, meta: sa.MetaData) -> sa.Table:
    """The 0004 shape of a reshaped table: no week columns; retention by month only."""
    # (report_medians loses its week rows with the column: the month rows are refilled by a rebuild)
    if table.name == "report_retention":
        return sa.Table(
            table.name, meta,
            sa.Column("practice", sa.String(64), nullable=False),
            sa.Column("service_line", sa.String(255), nullable=False),
            sa.Column("month", sa.String(7), nullable=False),
            sa.Column("cohort", sa.BigInteger(), nullable=False, server_default="0"),
            sa.Column("retained", sa.BigInteger(), nullable=False, server_default="0"),
            sa.PrimaryKeyConstraint("practice", "service_line", "month", name="pk_report_retention"))
    columns = [sa.Column(c.name, c.type, nullable=c.nullable,
                         server_default=getattr(c.server_default, "arg", None))
               for c in table.columns if c.name not in ("week", "paid_week")]
    key = [c.name for c in table.primary_key.columns if c.name not in ("week", "paid_week")]
    indexes = [sa.Index(i.name, *[c.name for c in i.columns]) for i in table.indexes]
    return sa.Table(table.name, meta, *columns, sa.PrimaryKeyConstraint(*key, name=f"pk_{table.name}"),
                    *indexes)


def downgrade() -> None:
    from hub.reports.tables import REPORT_TABLES

    bind = op.get_bind()
    tables = {t.name: t for t in REPORT_TABLES}
    meta = sa.MetaData()
    for name in RESHAPED:
        sa.Table(name, sa.MetaData()).drop(bind, checkfirst=True)
        _before(tables[name], meta).create(bind)
    for name in REFILLED:
        bind.execute(sa.delete(tables[name]))
    # the older code refills them: `hub report rebuild`
