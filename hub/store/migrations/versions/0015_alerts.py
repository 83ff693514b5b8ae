"""the alerts of the feed health rules: open, last sent, closed

Revision ID: 0015
Revises: 0014

One row per time a rule fired for a practice (``hub.operations.alerts``). ``open_key`` is
``practice:rule`` while the alert is open and null once it closed: unique, so two evaluators
(two ``hub worker`` processes, a cron ``hub alerts check``) never open the same alert twice.
"""

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

UTC = sa.DateTime()
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("practice", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("open_key", sa.String(100)),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON()),
        sa.Column("opened_at", UTC, nullable=False),
        sa.Column("last_sent_at", UTC, nullable=False),
        sa.Column("sent_count", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("closed_at", UTC),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.UniqueConstraint("open_key", name="uq_alerts_open_key"),
    )
    op.create_index("ix_alerts_practice_opened", "alerts", ["practice", "opened_at"])


def downgrade() -> None:
    op.drop_index("ix_alerts_practice_opened", "alerts")
    op.drop_table("alerts")
