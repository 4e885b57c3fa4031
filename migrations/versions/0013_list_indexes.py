"""list indexes: each sort, alone and after a status or assignee filter, in an index (decision 046)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 09:30:00.000000

The indexes are taskapi.models.task's own Index objects, so their expressions (the deadline
with NULLs last, the status rank) are the very text the list queries write. On PostgreSQL
CREATE INDEX holds writes to tasks until it is built (seconds per index at a million rows).
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from taskapi.models import Task

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW = ('ix_tasks_status_created', 'ix_tasks_status_id', 'ix_tasks_due', 'ix_tasks_status_due',
       'ix_tasks_assignee_due', 'ix_tasks_rank', 'ix_tasks_assignee_rank')


def upgrade() -> None:
    bind = op.get_bind()
    for index in sorted(Task.__table__.indexes, key=lambda index: str(index.name)):
        if index.name in NEW:
            index.create(bind)


def downgrade() -> None:
    for name in NEW:
        op.drop_index(name, table_name='tasks')
