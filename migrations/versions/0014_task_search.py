"""task search: trigram indexes of the tasks' title and description (decision 047)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 02:00:00.000000

The DDL is taskapi.models.search's (the statements create_all runs). The triggers come
first, then the backfill in batches of BATCH tasks in id order, in the migration's one
transaction: a write during the backfill is indexed by the trigger (PostgreSQL: the backfill
skips a task the trigger already holds), and on PostgreSQL the GIN indexes are built before
the rows arrive, so each batch is indexed as it lands and memory stays bounded.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from taskapi.models.search import BACKFILL, DROP_SEARCH_DDL, SEARCH_DDL

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 10_000


def backfill(bind: sa.Connection, batch: int = BATCH) -> int:
    """Index every task already there, `batch` at a time; the number of batches."""
    statement = sa.text(BACKFILL[bind.dialect.name])
    last_id, batches = 0, 0
    while True:
        top = bind.execute(sa.text(
            "SELECT max(id) FROM (SELECT id FROM tasks WHERE id > :last_id "
            "ORDER BY id LIMIT :batch) AS b"), {"last_id": last_id, "batch": batch}).scalar()
        if top is None:
            return batches
        bind.execute(statement, {"last_id": last_id, "batch": batch})
        last_id, batches = top, batches + 1


def upgrade() -> None:
    bind = op.get_bind()
    for statement in SEARCH_DDL[bind.dialect.name]:
        bind.exec_driver_sql(statement)
    backfill(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for statement in DROP_SEARCH_DDL[bind.dialect.name]:
        bind.exec_driver_sql(statement)
