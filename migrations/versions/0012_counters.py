"""counters kept by triggers: task_counts, user_counts (decision 045)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 09:00:00.000000

The triggers come first, then the backfill, in the migration's one transaction: on
PostgreSQL CREATE TRIGGER locks the table against writes until the commit, so no write falls
between the count and the triggers; on SQLite the migration holds the write lock.

The trigger DDL is taskapi.models.counts' (the same statements Base.metadata.create_all
runs): each is idempotent (IF NOT EXISTS, OR REPLACE), so a later migration that changes
the triggers re-runs it. A later SQLite migration that copies tasks or users (a batch ALTER)
drops their triggers with the old table and must run TRIGGERS_DDL again.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from taskapi.models.counts import (
    DROP_TRIGGERS_DDL,
    TRIGGERS_DDL,
    TaskCount,
    UserCount,
    task_counts_from_rows,
    user_counts_from_rows,
)

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('task_counts',
    sa.Column('assignee_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('slot', sa.Integer(), server_default='0', autoincrement=False, nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('assignee_id', 'status', 'slot', name=op.f('pk_task_counts'))
    )
    op.create_table('user_counts',
    sa.Column('is_approved', sa.Boolean(), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('is_approved', name=op.f('pk_user_counts'))
    )
    bind = op.get_bind()
    for statement in TRIGGERS_DDL[bind.dialect.name]:
        bind.exec_driver_sql(statement)
    tasks, users = TaskCount.__table__, UserCount.__table__
    bind.execute(sa.insert(tasks).from_select(['assignee_id', 'status', 'n'],
                                              task_counts_from_rows()))  # slot 0
    bind.execute(sa.insert(users).from_select(['is_approved', 'n'], user_counts_from_rows()))


def downgrade() -> None:
    bind = op.get_bind()
    for statement in DROP_TRIGGERS_DDL[bind.dialect.name]:
        bind.exec_driver_sql(statement)
    op.drop_table('user_counts')
    op.drop_table('task_counts')
