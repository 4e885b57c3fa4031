"""Prebuilt Core statements shared by the task commands and reads."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Executable, Table, bindparam, select, update

from taskapi.models import Task
from taskapi.schemas.tasks import TaskOut

# Prebuilt Core statements for the hot status route: no per-request statement building, no ORM
# identity map; the rows go straight into TaskOut. (Bind names differ from the column names,
# which UPDATE reserves for its SET clause.)
TASKS = cast(Table, Task.__table__)
OUT = [TASKS.c[name] for name in TaskOut.model_fields]
SELECT_ONE = select(*OUT, TASKS.c.version).where(TASKS.c.id == bindparam("b_id"))
SELECT_LOCKED = SELECT_ONE.with_for_update()  # PostgreSQL; SQLite's writer holds the lock


def _status_update() -> Executable:
    """The status change, only if the row is still at the version the caller read."""
    return (update(TASKS)
            .where(TASKS.c.id == bindparam("b_id"), TASKS.c.version == bindparam("b_version"))
            .values(status=bindparam("b_status"), updated_at=bindparam("b_now"),
                    completed_at=bindparam("b_done"), version=TASKS.c.version + 1)
            .returning(*OUT, TASKS.c.version))


SET_STATUS = _status_update()
