"""email confirmation: users.email_confirmed and the email_confirmations tokens

Existing users get email_confirmed = false: none of them has proved the address yet. With
TASKAPI_REQUIRE_EMAIL_CONFIRMATION on, an account still pending from before this migration
cannot be approved; approve it before turning the setting on, or reject it so that its owner
registers again and receives a confirmation link.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 01:30:10.883346
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import taskapi.models.base

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('email_confirmations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', taskapi.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', taskapi.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', taskapi.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_email_confirmations_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_email_confirmations')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_email_confirmations_token_hash')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('email_confirmations', schema=None) as batch_op:
        batch_op.create_index('ix_email_confirmations_user', ['user_id'], unique=False)

    # A literal default ('0', which PostgreSQL reads as false), not sa.false(): with an SQL
    # expression batch mode copies the table on SQLite, and dropping the old users table
    # (foreign keys on) would delete every session and unassign every task, and the copy
    # would lose AUTOINCREMENT. A literal is a plain ALTER TABLE ADD COLUMN.
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_confirmed', sa.Boolean(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('email_confirmed')

    with op.batch_alter_table('email_confirmations', schema=None) as batch_op:
        batch_op.drop_index('ix_email_confirmations_user')

    op.drop_table('email_confirmations')
