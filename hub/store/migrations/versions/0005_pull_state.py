"""pull state: high-water marks of pulling connectors

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('pull_state',
    sa.Column('practice', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=255), nullable=False),
    sa.Column('resource_type', sa.String(length=64), nullable=False),
    sa.Column('high_water', sa.String(length=40), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('practice', 'source', 'resource_type', name='pk_pull_state')
    )


def downgrade() -> None:
    op.drop_table('pull_state')
