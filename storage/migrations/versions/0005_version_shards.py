"""version shards: slices of a task version's input claimed by several workers

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 18:20:00
"""
import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'version_shards',
        sa.Column(
            'task_version_id',
            sa.String(length=19),
            sa.ForeignKey('task_versions.id', ondelete='CASCADE'),
            primary_key=True,
        ),
        sa.Column('pass_index', sa.Integer(), primary_key=True),
        sa.Column('shard_index', sa.Integer(), primary_key=True),
        sa.Column('start', sa.Integer(), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.Column('manifest', sa.Text(), nullable=False),
        sa.Column('features_uri', sa.Text(), nullable=False),
        sa.Column('state', sa.Integer(), nullable=False),
        sa.Column('owner', sa.String(length=128), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('heartbeat_at', sa.BigInteger(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table('version_shards')
