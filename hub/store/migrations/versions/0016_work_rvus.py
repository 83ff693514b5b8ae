"""work RVUs: the RVU table the MSO imports, and two rollup measures that sum it over charge lines

Revision ID: 0016
Revises: 0015

``report_rvus`` holds one schedule per effective year (``hub rvu import``): a row per procedure
code and modifier ('' for the code's base row) with the work RVU in thousandths. ``report_cells``
gains ``work_rvu_milli`` (units times the line's work RVU, in thousandths) and ``rvu_lines`` (the
charge lines an RVU row prices). Nothing is recomputed: the table starts empty, and with no RVU
row every line is unpriced, so 0, the new columns' default, is the right figure in every cell
until an import marks the cells it changes.
"""

import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

MEASURES = ("work_rvu_milli", "rvu_lines")


def upgrade() -> None:
    op.create_table(
        "report_rvus",
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(16), nullable=False),
        sa.Column("modifier", sa.String(8), nullable=False),
        sa.Column("work_milli", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("year", "code", "modifier", name="pk_report_rvus"))
    with op.batch_alter_table("report_cells") as batch:
        for name in MEASURES:
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("report_cells") as batch:
        for name in reversed(MEASURES):
            batch.drop_column(name)
    op.drop_table("report_rvus")
