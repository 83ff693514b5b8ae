"""service-line attribution and providers by NPI: look-ups for the charges of a visit; rollups recomputed

Revision ID: 0017
Revises: 0016

A charge takes its service line from its encounter or appointment when it carries none
(``hub.reports.attribution``), and the rollups slice providers by NPI rather than by each
practice's own id (``hub.reports.providers``). Two indexes let a batch of encounters or
appointments find the charges that hang on them, to mark those charges' months. The rollups
are not computed here: every (practice, month) the base tables hold records in is marked
dirty, so the next refresh (``hub report refresh``, the background refresh, or a report's
own) recomputes them with the code of its own time.
"""

from alembic import op

from hub.store.migrations.frozen import mark_every_cell

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_charges_practice_encounter", "charges", ["practice", "encounter_source_id"])
    op.create_index("ix_encounters_practice_appointment", "encounters", ["practice", "appointment_source_id"])
    mark_every_cell(op.get_bind())


def downgrade() -> None:
    op.drop_index("ix_encounters_practice_appointment", table_name="encounters")
    op.drop_index("ix_charges_practice_encounter", table_name="charges")
    mark_every_cell(op.get_bind())
