"""fine rollups: the fine grain in tables of its own, without a key

Revision ID: 0019
Revises: 0018

The fine grain of the report rollups (practice × location × provider × service line × financial
class × month × week) holds about one row per record. Kept under the rollup tables' eight-column
primary key, each source's rows regrouped into one row per key, it was most of a catch-up's time.
``report_fine_cells``, ``report_fine_hist`` and ``report_fine_credits`` hold it now: rows only added
and deleted by (practice, month), indexed by those, each source's own measures in a row of its own
(the others NULL). The rows move over as they are; readers sum them, as they sum cells anyway.
"""

import sqlalchemy as sa
from alembic import op

from hub.store.migrations.frozen import DIMS
from hub.store.migrations.frozen import MEASURES as MEASURES_0004

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None

MEASURES = (*MEASURES_0004, "work_rvu_milli", "rvu_lines")  # 0016 added the work RVUs
# each fine table: its columns besides the dimensions, month and week, and the keyed table its rows come from
TABLES = {
    "report_fine_cells": ("report_cells", MEASURES),
    "report_fine_hist": ("report_hist", ("metric", "value", "n")),
    "report_fine_credits": ("report_credits", ("paid_month", "paid_week", "credits_cents")),
}


def _columns(table: str) -> list[sa.Column]:
    if table == "report_fine_cells":
        return [sa.Column(m, sa.BigInteger(), nullable=True) for m in MEASURES]
    if table == "report_fine_hist":
        return [sa.Column("metric", sa.String(40), nullable=False), sa.Column("value", sa.Integer(), nullable=False),
                sa.Column("n", sa.BigInteger(), nullable=False)]
    return [sa.Column("paid_month", sa.String(7), nullable=False), sa.Column("paid_week", sa.String(10), nullable=False),
            sa.Column("credits_cents", sa.BigInteger(), nullable=False)]


def upgrade() -> None:
    bind = op.get_bind()
    for table, (keyed, columns) in TABLES.items():
        op.create_table(table, *[sa.Column(d, sa.String(255), nullable=False) for d in DIMS],
                        sa.Column("month", sa.String(7), nullable=False),
                        sa.Column("week", sa.String(10), nullable=False), *_columns(table))
        names = ", ".join([*DIMS, "month", "week", *columns])
        bind.execute(sa.text(f"INSERT INTO {table} ({names}) SELECT {names} FROM {keyed} WHERE grain = 'fine'"))
        bind.execute(sa.text(f"DELETE FROM {keyed} WHERE grain = 'fine'"))
        op.create_index(f"ix_{table}_practice_month", table, ["practice", "month"])


def downgrade() -> None:
    bind = op.get_bind()
    for table, (keyed, columns) in TABLES.items():
        keys = [] if table == "report_fine_cells" else list(columns[:-1])
        names = ", ".join([*DIMS, "month", "week", *keys])
        if table == "report_fine_cells":  # one row per key again, the sources' rows summed
            sums = ", ".join(f"COALESCE(SUM({m}), 0)" for m in MEASURES)
            bind.execute(sa.text(f"INSERT INTO {keyed} (grain, {names}, {', '.join(MEASURES)}) SELECT 'fine', "
                                 f"{names}, {sums} FROM {table} GROUP BY {names}"))
        else:
            last = columns[-1]
            bind.execute(sa.text(f"INSERT INTO {keyed} (grain, {names}, {last}) SELECT 'fine', {names}, SUM({last}) "
                                 f"FROM {table} GROUP BY {names}"))
        op.drop_table(table)
