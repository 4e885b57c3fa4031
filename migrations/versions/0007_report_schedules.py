"""scheduled reports: users.report_schedule, report_requests.trigger and period

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-02 02:00:00.000000

Existing admins and managers get weekly reports (the default for staff); employees none.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import taskapi.models.base

revision: str = '0007'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('report_schedule', sa.Enum('daily', 'weekly', 'off', name='report_schedule', native_enum=False, length=16), nullable=True))
    op.execute("UPDATE users SET report_schedule = 'weekly' WHERE role IN ('admin', 'manager')")

    with op.batch_alter_table('report_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('trigger', sa.Enum('requested', 'scheduled', name='report_trigger', native_enum=False, length=16), server_default='requested', nullable=False))
        batch_op.add_column(sa.Column('period_start', taskapi.models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('period_end', taskapi.models.base.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('report_requests', schema=None) as batch_op:
        batch_op.drop_column('period_end')
        batch_op.drop_column('period_start')
        batch_op.drop_column('trigger')

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('report_schedule')
