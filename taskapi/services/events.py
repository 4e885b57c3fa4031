"""The task event log: every task write records its event here, in its own transaction.

One table serves a task's history (GET /task/{id}/history) and the live-event log (decision
021). Event ids must increase in commit order, so a reader that has seen id N never later
finds a smaller id committed after it: on PostgreSQL the insert first takes a transaction-
scoped advisory lock, held until commit, so event-writing transactions commit one at a time
in id order; SQLite has a single writer already (decision 022).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.models import TaskEvent, utcnow
from taskapi.schemas.tasks import TaskOut

CREATED, UPDATED, STATUS_CHANGED = "task.created", "task.updated", "task.status_changed"
ASSIGNED, DELETED, COMMENTED = "task.assigned", "task.deleted", "comment.created"
# The history's action for each event type.
ACTIONS = {CREATED: "created", UPDATED: "updated", STATUS_CHANGED: "status_changed",
           ASSIGNED: "assigned", DELETED: "deleted", COMMENTED: "commented"}
# Any constant: every event writer takes the same lock.
EVENT_LOCK = 0x7461736B  # "task"
EVENTS = cast(Table, TaskEvent.__table__)
_INSERT = insert(EVENTS)
_ROW = ("type", "task_id", "actor_id", "audience", "data", "changes", "created_at")


def _locked_insert() -> Any:
    """PostgreSQL: the lock and the insert in one statement (INSERT … SELECT … FROM (SELECT
    pg_advisory_xact_lock(…))): the id is drawn after the lock is held. One round trip fewer
    while every event writer waits for the lock: held until commit, it was held across three
    of the writer's round trips, each a turn of a busy event loop (decision 022)."""
    held = select(func.pg_advisory_xact_lock(EVENT_LOCK)).subquery("held")
    values = [sql_cast(bindparam(name, type_=EVENTS.c[name].type), EVENTS.c[name].type)
              for name in _ROW]
    return insert(EVENTS).from_select([EVENTS.c[name] for name in _ROW],
                                      select(*values).select_from(held))


_LOCKED_INSERT = _locked_insert()
# The fields a task's history reports (created_by, timestamps and the id follow from these).
TRACKED = ("title", "description", "deadline", "status", "assigned_user_id")


def _json(value: Any) -> Any:
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{field: {"from", "to"}} for the tracked fields that differ (values as JSON has them)."""
    return {name: {"from": _json(before.get(name)), "to": _json(after.get(name))}
            for name in TRACKED if before.get(name) != after.get(name)}


def created(task: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A new task's history: the fields it was created with (empty ones left out)."""
    return {name: change for name, change in diff({}, task).items()
            if change["to"] not in (None, "")}


def snapshot(task: TaskOut) -> dict[str, Any]:
    return task.model_dump(mode="json")


def values(type_: str, task_id: int, actor_id: int | None, audience: list[int | None],
           data: dict[str, Any], changes: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": type_, "task_id": task_id, "actor_id": actor_id,
            "audience": sorted({uid for uid in audience if uid is not None}),
            "data": data, "changes": changes or {}, "created_at": utcnow()}


def _insert_on(dialect: str) -> Any:
    """PostgreSQL takes the log's lock in the insert; SQLite's single writer needs none."""
    return _LOCKED_INSERT if dialect == "postgresql" else _INSERT


async def record(session: AsyncSession, row: dict[str, Any]) -> None:
    """Record one event (built by `values`) in the session's transaction."""
    await session.execute(_insert_on(session.get_bind().dialect.name), row)


def record_sync(conn: Connection, row: dict[str, Any]) -> None:
    """`record` for work run on a connection (Database.run)."""
    conn.execute(_insert_on(conn.dialect.name), row)


HISTORY = (select(EVENTS.c.id, EVENTS.c.type, EVENTS.c.created_at, EVENTS.c.actor_id,
                  EVENTS.c.changes)
           .order_by(EVENTS.c.id))
