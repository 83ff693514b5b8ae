"""report weeks: the rollups carry each record's ISO week; retention kept for every kind of period

Revision ID: 0007
Revises: 0006

The reshaped tables are declared in both shapes, this revision's (with weeks) and 0004's
(without), in ``hub/store/migrations/frozen.py``, so the migration does not change when the report code does. The rollups
are not computed here: the reshaped tables start empty, and every (practice, month) the base
tables hold records in is marked dirty, so the next report (or ``hub report refresh``)
recomputes them with the code of its own time.
"""

from alembic import op

from hub.store.migrations.frozen import create_report_rollups, mark_every_cell

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# the tables whose shape changes (a week column in the keys; retention by period kind)
RESHAPED = ("report_cells", "report_hist", "report_credits", "report_retention", "report_medians")
# kept as they are but emptied: retention deltas are only right against the visits they were counted from
REFILLED = ("report_visits",)
# imported costs (report_costs) stay: they are no rollup


def _reshape(weeks: bool) -> None:
    for name in RESHAPED:
        op.drop_table(name)
    create_report_rollups(weeks)
    for name in REFILLED:
        op.execute(f"DELETE FROM {name}")


def upgrade() -> None:
    _reshape(weeks=True)
    mark_every_cell(op.get_bind())


def downgrade() -> None:
    _reshape(weeks=False)
    mark_every_cell(op.get_bind())
