"""claim lines: a charge's line number within its claim, and the claim line a remittance answers

Revision ID: 0012
Revises: 0011

A remittance that names its claim by number (a FHIR ClaimResponse whose request is the Claim's
business identifier, in another message than the Claim) cannot name the charge's source id; it names
the claim and the line, and the store links it to the charge with that ``claim_id`` and ``claim_line``.
"""

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

STAMP_LENGTH = 32
TABLES = ("charges", "remittances")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("claim_line", sa.Integer(), nullable=True))
            batch.add_column(sa.Column("claim_line__stamp", sa.String(STAMP_LENGTH), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("claim_line__stamp")
            batch.drop_column("claim_line")
