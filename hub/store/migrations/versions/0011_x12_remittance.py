"""X12 835 remittances and 837P claims: the fields of an electronic remittance advice and of a claim line

Revision ID: 0011
Revises: 0010

``remittances`` gain what an 835 says of a paid (or denied, or reversed) service line: the payer's
claim control number, the claim status, the payer's id, the payee's NPI, the payment's trace number,
the procedure and its modifiers, the charged amount, units, the service date and the remark codes.
``charges`` gain the claim they were billed on, the payer's id and the rendering and billing NPIs
(837P). Each new field has its event stamp column, as every field has since 0008. Money is whole
cents in a BIGINT, lists are JSON, as in 0001.
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

STAMP_LENGTH = 32
FIELDS: dict[str, tuple[tuple[str, Any], ...]] = {
    "remittances": (
        ("payer_claim_id", sa.String(255)),
        ("claim_status", sa.String(255)),
        ("payer_id", sa.String(255)),
        ("payee_npi", sa.String(255)),
        ("trace_number", sa.String(255)),
        ("procedure_code", sa.String(255)),
        ("modifiers", sa.JSON()),
        ("charged_amount", sa.BigInteger()),
        ("units", sa.Integer()),
        ("service_date", sa.Date()),
        ("remark_codes", sa.JSON()),
    ),
    "charges": (
        ("claim_id", sa.String(255)),
        ("payer_id", sa.String(255)),
        ("rendering_npi", sa.String(255)),
        ("billing_npi", sa.String(255)),
    ),
}


def upgrade() -> None:
    for table, columns in FIELDS.items():
        with op.batch_alter_table(table) as batch:
            for name, type_ in columns:
                batch.add_column(sa.Column(name, type_, nullable=True))
                batch.add_column(sa.Column(f"{name}__stamp", sa.String(STAMP_LENGTH), nullable=True))


def downgrade() -> None:
    for table, columns in FIELDS.items():
        with op.batch_alter_table(table) as batch:
            for name, _ in reversed(columns):
                batch.drop_column(f"{name}__stamp")
                batch.drop_column(name)
