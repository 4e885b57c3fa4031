"""The counters (decision 045): read them, and recount them from the rows.

Reads are sums over at most SLOTS rows per (assignee or ALL, status) of task_counts, found by
its primary key, and the two rows of user_counts: never a scan of tasks or users.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.engine import Connection

from taskapi.models import TaskCount, TaskDueCount, TaskStatus, UserCount
from taskapi.models.counts import ALL, task_counts_from_rows, user_counts_from_rows
from taskapi.models.due_counts import due_counts_from_rows


def tasks_by_status(conn: Connection, assignee: int | None = None) -> dict[str, int]:
    """Every status's count (0 when none), of one assignee's tasks or (None) of all."""
    query = (select(TaskCount.status, func.sum(TaskCount.n))
             .where(TaskCount.assignee_id == (ALL if assignee is None else assignee))
             .group_by(TaskCount.status))
    counts = {status.value: 0 for status in TaskStatus}
    for status, n in conn.execute(query):
        counts[status] = int(n or 0)
    return counts


def task_total(conn: Connection, assignee: int | None, status: str | None) -> int:
    """Tasks of this assignee (None: anyone's) in this status (None: any)."""
    query = select(func.coalesce(func.sum(TaskCount.n), 0)).where(
        TaskCount.assignee_id == (ALL if assignee is None else assignee))
    if status is not None:
        query = query.where(TaskCount.status == status)
    return int(conn.scalar(query) or 0)


def user_totals(conn: Connection) -> tuple[int, int]:
    """(users, users pending approval)."""
    rows = {bool(approved): int(n) for approved, n in conn.execute(
        select(UserCount.is_approved, UserCount.n))}
    return rows.get(True, 0) + rows.get(False, 0), rows.get(False, 0)


@dataclass(frozen=True)
class Correction:
    table: str
    key: tuple[Any, ...]
    was: int
    now: int

    def __str__(self) -> str:
        key = ", ".join(str(k) for k in self.key)
        return f"{self.table} ({key}): {self.was} -> {self.now}"


def recount(conn: Connection) -> list[Correction]:
    """Set every counter to the count of its rows; what was wrong. Run it in one write
    transaction: on PostgreSQL the tables are locked against writes (reads go on) until it
    commits, so no trigger moves a counter between the count and the fix; a SQLite write
    transaction holds the write lock already. Rows at 0 are pruned (not corrections)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("LOCK TABLE tasks, users, task_counts, task_due_counts, user_counts "
                          "IN SHARE MODE"))
    fixes = _fix(conn, TaskCount, [TaskCount.assignee_id, TaskCount.status],
                 task_counts_from_rows())
    fixes += _fix(conn, TaskDueCount, [TaskDueCount.status, TaskDueCount.due_day],
                  due_counts_from_rows())
    return fixes + _fix(conn, UserCount, [UserCount.is_approved], user_counts_from_rows())


def _fix(conn: Connection, model: Any, key: list[Any], truth: Any) -> list[Correction]:
    """Each key whose rows do not sum to its count gets one row with the count (or none
    when it is 0); a key already right keeps its rows (on PostgreSQL, one per slot)."""
    table = model.__table__
    want = {tuple(row[:-1]): int(row[-1]) for row in conn.execute(truth)}
    have = {tuple(row[:-1]): int(row[-1] or 0) for row in conn.execute(
        select(*key, func.sum(model.n)).group_by(*key))}
    fixes = []
    for values in sorted(set(want) | set(have), key=str):
        was, now = have.get(values, 0), want.get(values, 0)
        if was == now and now != 0:
            continue
        match = [column == value for column, value in zip(key, values, strict=True)]
        conn.execute(delete(table).where(*match))  # a 0 is pruned
        if now != 0:
            row = dict(zip([column.key for column in key], values, strict=True))
            conn.execute(insert(table).values({**row, "n": now}))
        if was != now:
            fixes.append(Correction(table.name, values, was, now))
    return fixes
