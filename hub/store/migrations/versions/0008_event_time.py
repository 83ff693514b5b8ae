"""event time: each record's latest event, and per field the stamp of the event that gave its value

Revision ID: 0008
Revises: 0007

Rows stored before this revision have no stamps: the first event written after the upgrade
takes every field it carries, and from then on the latest event wins field by field.
The field lists are written out here, as they were at this revision, so the migration does not
change when the model does.
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

STAMP_LENGTH = 32
FIELDS = {
    "locations": ('name', 'mso_location',),
    "providers": ('npi', 'family_name', 'given_name', 'specialty',),
    "patients": ('identifiers', 'family_name', 'given_name', 'birth_date', 'sex', 'postal_code', 'phone', 'enterprise_id',),
    "coverages": ('patient_source_id', 'payer_name', 'payer', 'financial_class', 'member_id', 'rank',),
    "appointments": ('patient_source_id', 'provider_source_id', 'provider_npi', 'location_source_id', 'mso_location', 'start', 'duration_min', 'visit_type', 'visit_category', 'service_line', 'status', 'cancel_reason', 'cancel_category', 'cancelled_at', 'booked_at', 'referral_source_id', 'new_patient',),
    "encounters": ('patient_source_id', 'provider_source_id', 'appointment_source_id', 'location_source_id', 'mso_location', 'start', 'end', 'status', 'visit_type', 'visit_category', 'service_line',),
    "referrals": ('patient_source_id', 'referring_provider', 'specialty', 'service_line', 'received_on', 'status',),
    "charges": ('encounter_source_id', 'patient_source_id', 'provider_source_id', 'location_source_id', 'service_date', 'posted_on', 'procedure_code', 'modifiers', 'units', 'amount', 'diagnosis_codes', 'payer_name', 'payer', 'financial_class', 'visit_type', 'service_line',),
    "remittances": ('charge_source_id', 'claim_id', 'payer_name', 'payer', 'paid_amount', 'adjustment_amount', 'adjustments', 'denied', 'paid_on',),
    "slots": ('provider_source_id', 'location_source_id', 'start', 'duration_min', 'status', 'service_line',),
    "patient_merges": ('prior_source_id', 'surviving_source_id', 'merged_at',),
}


def upgrade() -> None:
    for table, fields in FIELDS.items():
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("event_time", sa.String(40), nullable=True))
            batch.add_column(sa.Column("stamp", sa.String(STAMP_LENGTH), nullable=True))
            for field in fields:
                batch.add_column(sa.Column(f"{field}__stamp", sa.String(STAMP_LENGTH), nullable=True))


def downgrade() -> None:
    for table, fields in FIELDS.items():
        with op.batch_alter_table(table) as batch:
            for field in reversed(fields):
                batch.drop_column(f"{field}__stamp")
            batch.drop_column("stamp")
            batch.drop_column("event_time")
