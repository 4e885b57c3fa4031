"""task_due_counts: tasks per (status, UTC day of the deadline), kept by triggers (decision 045)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 02:10:00.000000

As 0012: the triggers first, then the backfill, in the migration's one transaction (on
PostgreSQL CREATE TRIGGER locks tasks against writes until the commit; on SQLite the
migration holds the write lock). The DDL is taskapi.models.due_counts' (what create_all runs).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from taskapi.models.due_counts import (
    DROP_DUE_TRIGGERS_DDL,
    DUE_TRIGGERS_DDL,
    TaskDueCount,
    due_counts_from_rows,
)

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('task_due_counts',
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('due_day', sa.String(length=10), nullable=False),
    sa.Column('slot', sa.Integer(), server_default='0', autoincrement=False, nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('status', 'due_day', 'slot', name=op.f('pk_task_due_counts'))
    )
    bind = op.get_bind()
    for statement in DUE_TRIGGERS_DDL[bind.dialect.name]:
        bind.exec_driver_sql(statement)
    bind.execute(sa.insert(TaskDueCount.__table__).from_select(
        ['status', 'due_day', 'n'], due_counts_from_rows()))  # slot 0


def downgrade() -> None:
    bind = op.get_bind()
    for statement in DROP_DUE_TRIGGERS_DDL[bind.dialect.name]:
        bind.exec_driver_sql(statement)
    op.drop_table('task_due_counts')
