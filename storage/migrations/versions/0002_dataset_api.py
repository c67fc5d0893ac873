"""dataset api: version ordering, parent counters and publish options on dataset_versions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 14:57:48.328072

Rows that exist before this revision were all written by an import (``V001``), which keeps sample
usage and hard-example attributes as read: the server defaults say so.
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('dataset_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seq', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(
            sa.Column('previous_total_sample_count', sa.Integer(), nullable=False, server_default='0')
        )
        batch_op.add_column(
            sa.Column('previous_annotated_sample_count', sa.Integer(), nullable=False, server_default='0')
        )
        batch_op.add_column(
            sa.Column('train_evaluate_sample_ratio', sa.String(length=16), nullable=False, server_default='1.00')
        )
        batch_op.add_column(
            sa.Column('remove_sample_usage', sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column('clear_hard_property', sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column('label_type', sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('dataset_versions', schema=None) as batch_op:
        batch_op.drop_column('label_type')
        batch_op.drop_column('clear_hard_property')
        batch_op.drop_column('remove_sample_usage')
        batch_op.drop_column('train_evaluate_sample_ratio')
        batch_op.drop_column('previous_annotated_sample_count')
        batch_op.drop_column('previous_total_sample_count')
        batch_op.drop_column('seq')
