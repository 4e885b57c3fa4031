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
SELECT_ONE = select(*OUT).where(TASKS.c.id == bindparam("b_id"))


def _status_update(assignee_only: bool) -> Executable:
    where = [TASKS.c.id == bindparam("b_id"), TASKS.c.status != bindparam("b_status")]
    if assignee_only:
        where.append(TASKS.c.assigned_user_id == bindparam("b_user"))
    return (update(TASKS).where(*where)
            .values(status=bindparam("b_status"), updated_at=bindparam("b_now"),
                    completed_at=bindparam("b_done"))
            .returning(*OUT))


SET_STATUS = {False: _status_update(False), True: _status_update(True)}
