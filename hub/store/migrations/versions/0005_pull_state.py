"""pull state: high-water marks of pulling connectors

Revision ID: 0005
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

import hub.model.tables

revision = '0005'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('pull_state',
    sa.Column('practice', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=255), nullable=False),
    sa.Column('resource_type', sa.String(length=64), nullable=False),
    sa.Column('high_water', sa.String(length=40), nullable=False),
    sa.Column('updated_at', hub.model.tables.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('practice', 'source', 'resource_type', name='pk_pull_state')
    )


def downgrade() -> None:
    op.drop_table('pull_state')
