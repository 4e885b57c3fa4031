"""accounts people run themselves: password_resets, personal_tokens, auth_sessions device

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 13:20:00.000000

auth_sessions gains user_agent and ip (nullable: sessions from before show neither).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import taskapi.models.base

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('password_resets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', taskapi.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', taskapi.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', taskapi.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_password_resets_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_password_resets')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_password_resets_token_hash')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('password_resets', schema=None) as batch_op:
        batch_op.create_index('ix_password_resets_user', ['user_id'], unique=False)

    op.create_table('personal_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('scope', sa.String(length=8), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', taskapi.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', taskapi.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', taskapi.models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_personal_tokens_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_personal_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_personal_tokens_token_hash')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('personal_tokens', schema=None) as batch_op:
        batch_op.create_index('ix_personal_tokens_user', ['user_id'], unique=False)

    # Nullable, no default: a plain ALTER TABLE ADD COLUMN on SQLite (no table copy).
    with op.batch_alter_table('auth_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('user_agent', sa.String(length=256), nullable=True))
        batch_op.add_column(sa.Column('ip', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('auth_sessions', schema=None) as batch_op:
        batch_op.drop_column('ip')
        batch_op.drop_column('user_agent')
    with op.batch_alter_table('personal_tokens', schema=None) as batch_op:
        batch_op.drop_index('ix_personal_tokens_user')
    op.drop_table('personal_tokens')
    with op.batch_alter_table('password_resets', schema=None) as batch_op:
        batch_op.drop_index('ix_password_resets_user')
    op.drop_table('password_resets')
