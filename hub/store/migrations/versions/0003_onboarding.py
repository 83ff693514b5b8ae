"""onboarding backfill checkpoint

Revision ID: 0003
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('onboarding_files',
    sa.Column('practice', sa.String(length=64), nullable=False),
    sa.Column('file_key', sa.String(length=64), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('chunks_done', sa.Integer(), server_default='0', nullable=False),
    sa.Column('messages', sa.Integer(), server_default='0', nullable=False),
    sa.Column('done', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('practice', 'file_key', name=op.f('pk_onboarding_files'))
    )


def downgrade() -> None:
    op.drop_table('onboarding_files')
