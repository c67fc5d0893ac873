"""task list indexes: newest-first paging and is_current lookups

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 15:25:00
"""
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_tasks_project_created', 'processor_tasks', ['project_id', 'create_time'])
    op.create_index(
        'ix_tasks_current', 'processor_tasks', ['project_id', 'template_id', 'version_id', 'create_time']
    )


def downgrade() -> None:
    op.drop_index('ix_tasks_current', table_name='processor_tasks')
    op.drop_index('ix_tasks_project_created', table_name='processor_tasks')
