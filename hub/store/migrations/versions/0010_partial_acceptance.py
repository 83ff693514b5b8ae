"""partial acceptance: what a message held besides its records; encounter class; unpriced charges

Revision ID: 0010
Revises: 0009

``messages.tally`` keeps, per message, the parts the hub did not map and the invalid optional
elements it left out (JSON, null when none). ``encounters.encounter_class`` is the HL7 v3
ActEncounterCode; ``charges.unpriced`` marks a line sent without an amount. Each new field has its
event stamp column, as every field has since 0008.
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

STAMP_LENGTH = 32
FIELDS: dict[str, tuple[str, Any]] = {
    "encounters": ("encounter_class", sa.String(255)),
    "charges": ("unpriced", sa.Boolean()),
}


def upgrade() -> None:
    op.add_column("messages", sa.Column("tally", sa.Text(), nullable=True))
    for table, (name, type_) in FIELDS.items():
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column(name, type_, nullable=True))
            batch.add_column(sa.Column(f"{name}__stamp", sa.String(STAMP_LENGTH), nullable=True))


def downgrade() -> None:
    for table, (name, _) in FIELDS.items():
        with op.batch_alter_table(table) as batch:
            batch.drop_column(f"{name}__stamp")
            batch.drop_column(name)
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("tally")
