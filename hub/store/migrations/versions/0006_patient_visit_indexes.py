"""patient visit indexes: a patient's appointments and encounters by (practice, patient)

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_appointments_practice_patient", "appointments", ["practice", "patient_source_id"])
    op.create_index("ix_encounters_practice_patient", "encounters", ["practice", "patient_source_id"])


def downgrade() -> None:
    op.drop_index("ix_encounters_practice_patient", table_name="encounters")
    op.drop_index("ix_appointments_practice_patient", table_name="appointments")
