"""api keys: X-Auth-Token keys scoped to projects

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 15:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'api_keys',
        sa.Column('id', sa.String(length=19), nullable=False),
        sa.Column('secret_hash', sa.String(length=64), nullable=False),
        sa.Column('projects', sa.JSON(), nullable=False),
        sa.Column('description', sa.String(length=256), nullable=False),
        sa.Column('create_time', sa.BigInteger(), nullable=False),
        sa.Column('revoked_time', sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )


def downgrade() -> None:
    op.drop_table('api_keys')
