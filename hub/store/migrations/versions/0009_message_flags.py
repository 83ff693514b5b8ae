"""message flags: a note on a stored message (control id reused), and the look-up by control id

Revision ID: 0009
Revises: 0008

Duplicates are keyed on each connector's dedup key from this revision on. Messages stored
before it keep their keys: the content hash, which is still the key of connectors that keep
the default; for HL7 v2, FHIR and CSV a resend of a message stored before the upgrade is
stored again (processing is idempotent, so the records stay the same).
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("flag", sa.String(length=64), nullable=True))
    op.create_index("ix_messages_practice_control", "messages", ["practice", "control_id"])


def downgrade() -> None:
    op.drop_index("ix_messages_practice_control", table_name="messages")
    with op.batch_alter_table("messages") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("flag")
