"""patient visit indexes: a patient's appointments and encounters by (practice, patient)

Revision ID: 0006
Revises: 0005

A patient record or merge looks up the patient's visits by practice and patient id.
"""

from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_appointments_practice_patient", "appointments", ["practice", "patient_source_id"])
    op.create_index("ix_encounters_practice_patient", "encounters", ["practice", "patient_source_id"])
    # the (practice, patient) indexes answer every query the patient-only ones did
    op.drop_index("ix_appointments_patient_source_id", table_name="appointments")
    op.drop_index("ix_encounters_patient_source_id", table_name="encounters")


def downgrade() -> None:
    op.create_index("ix_encounters_patient_source_id", "encounters", ["patient_source_id"])
    op.create_index("ix_appointments_patient_source_id", "appointments", ["patient_source_id"])
    op.drop_index("ix_encounters_practice_patient", table_name="encounters")
    op.drop_index("ix_appointments_practice_patient", table_name="appointments")
