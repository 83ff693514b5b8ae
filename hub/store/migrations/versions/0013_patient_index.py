"""the master patient index: links, scored pairs and runs; patients gain address line and email

Revision ID: 0013
Revises: 0012

``identity_links`` puts each patient record under an opaque, random enterprise id and says what
linked it; ``identity_pairs`` keeps the scored comparisons and the review queue with operators'
decisions; ``identity_runs`` the runs of ``hub identity run`` with the trained model and the
high-water mark of patients compared. Patients gain the first line of the home address and the
e-mail address, compared by the matcher, and an index on their ``updated_at`` (has any patient
changed since the last run?). ``patients.enterprise_id`` stays what a feed or plugin
sent (a shared enterprise identifier, one of the matcher's rules); the index's own id is the link's.
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

STAMP_LENGTH = 32
PATIENT_FIELDS: tuple[tuple[str, Any], ...] = (("address_line", sa.String(255)), ("email", sa.String(255)))
UTC = sa.DateTime()
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("patients") as batch:
        for name, type_ in PATIENT_FIELDS:
            batch.add_column(sa.Column(name, type_, nullable=True))
            batch.add_column(sa.Column(f"{name}__stamp", sa.String(STAMP_LENGTH), nullable=True))
    op.create_index("ix_patients_updated_at", "patients", ["updated_at"])
    op.create_table(
        "identity_links",
        sa.Column("practice", sa.String(64), nullable=False),
        sa.Column("source_id", sa.String(255), nullable=False),
        sa.Column("enterprise_id", sa.String(32), nullable=False),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("weight", sa.Float()),
        sa.Column("split", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("linked_at", UTC, nullable=False),
        sa.Column("compared_at", UTC),
        sa.PrimaryKeyConstraint("practice", "source_id", name="pk_identity_links"),
    )
    op.create_index("ix_identity_links_enterprise_id", "identity_links", ["enterprise_id"])
    op.create_table(
        "identity_pairs",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("practice_a", sa.String(64), nullable=False),
        sa.Column("source_a", sa.String(255), nullable=False),
        sa.Column("practice_b", sa.String(64), nullable=False),
        sa.Column("source_b", sa.String(255), nullable=False),
        sa.Column("rule", sa.String(64)),
        sa.Column("weight", sa.Float()),
        sa.Column("probability", sa.Float()),
        sa.Column("agreement", sa.JSON()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(64)),
        sa.Column("decided_at", UTC),
        sa.Column("scored_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_identity_pairs"),
        sa.UniqueConstraint("practice_a", "source_a", "practice_b", "source_b",
                            name="uq_identity_pairs_practice_a_source_a_practice_b_source_b"),
    )
    op.create_index("ix_identity_pairs_b", "identity_pairs", ["practice_b", "source_b"])
    op.create_index("ix_identity_pairs_status", "identity_pairs", ["status"])
    op.create_table(
        "identity_runs",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("started_at", UTC, nullable=False),
        sa.Column("finished_at", UTC),
        sa.Column("full", sa.Boolean(), nullable=False),
        sa.Column("watermark", UTC),
        sa.Column("summary", sa.JSON()),
        sa.Column("model", sa.JSON()),
        sa.PrimaryKeyConstraint("id", name="pk_identity_runs"),
    )


def downgrade() -> None:
    op.drop_table("identity_runs")
    op.drop_index("ix_identity_pairs_status", "identity_pairs")
    op.drop_index("ix_identity_pairs_b", "identity_pairs")
    op.drop_table("identity_pairs")
    op.drop_index("ix_identity_links_enterprise_id", "identity_links")
    op.drop_table("identity_links")
    op.drop_index("ix_patients_updated_at", "patients")
    with op.batch_alter_table("patients") as batch:
        for name, _ in reversed(PATIENT_FIELDS):
            batch.drop_column(f"{name}__stamp")
            batch.drop_column(name)
