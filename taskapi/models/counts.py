"""Counters kept by triggers in each write's own transaction (decision 045).

task_counts: per (assignee, status) the number of tasks, assignee 0 for a task assigned to no
one and ALL (-1) for every task; a count is the sum of its key's rows over `slot`. On
PostgreSQL each connection bumps the rows of its own slot (its backend pid mod SLOTS), so
writers on other connections never wait for one another's counter rows; SQLite has one writer
at a time and uses slot 0. A slot's row may go negative (a task created on one connection and
deleted on another): only the sums mean anything. user_counts: one row per is_approved.
Rows are never deleted by the triggers (`taskapi db recount` prunes those at 0).

The triggers are the same on every path that creates the schema: migration 0012 runs
TRIGGERS_DDL, and Base.metadata.create_all runs it too (create_with_schema, at the bottom).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Integer, String, func, literal, select, union_all
from sqlalchemy.orm import Mapped, mapped_column

from taskapi.models.base import Base, create_with_schema
from taskapi.models.task import Task
from taskapi.models.user import User

NO_ASSIGNEE = 0  # ids start at 1 on both databases
ALL = -1  # the rows that count every task
SLOTS = 8


class TaskCount(Base):
    __tablename__ = "task_counts"

    assignee_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False,
                                      server_default="0")
    n: Mapped[int] = mapped_column(Integer, default=0)


class UserCount(Base):
    __tablename__ = "user_counts"

    is_approved: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    n: Mapped[int] = mapped_column(Integer, default=0)


def task_counts_from_rows() -> Any:
    """What task_counts should sum to: (assignee_id, status, n) counted from the tasks,
    per assignee (0: none) and for ALL."""
    assignee = func.coalesce(Task.assigned_user_id, literal(NO_ASSIGNEE))
    return union_all(
        select(assignee, Task.status, func.count()).group_by(assignee, Task.status),
        select(literal(ALL), Task.status, func.count()).group_by(Task.status))


def user_counts_from_rows() -> Any:
    """What user_counts should hold: (is_approved, n) counted from the users."""
    return select(User.is_approved, func.count()).group_by(User.is_approved)


_SQLITE_BUMP = """INSERT INTO {table} ({key}, n) VALUES ({values}, {delta})
    ON CONFLICT ({key}{slot}) DO UPDATE SET n = n + excluded.n;"""


def _sqlite_bump(table: str, key: str, values: str, delta: int) -> str:
    slot = ", slot" if table == "task_counts" else ""
    return _SQLITE_BUMP.format(table=table, key=key, values=values, delta=delta, slot=slot)


_T, _TK = "task_counts", "assignee_id, status"
_OLD_T, _NEW_T = "coalesce(OLD.assigned_user_id, 0), OLD.status", \
    "coalesce(NEW.assigned_user_id, 0), NEW.status"
_OLD_ALL, _NEW_ALL = f"{ALL}, OLD.status", f"{ALL}, NEW.status"

# SQLite has one writer at a time (BEGIN IMMEDIATE): nothing to contend for, slot 0.
SQLITE_TRIGGERS = [
    f"CREATE TRIGGER IF NOT EXISTS task_counts_insert AFTER INSERT ON tasks BEGIN "
    f"{_sqlite_bump(_T, _TK, _NEW_T, 1)} {_sqlite_bump(_T, _TK, _NEW_ALL, 1)} END",
    f"CREATE TRIGGER IF NOT EXISTS task_counts_delete AFTER DELETE ON tasks BEGIN "
    f"{_sqlite_bump(_T, _TK, _OLD_T, -1)} {_sqlite_bump(_T, _TK, _OLD_ALL, -1)} END",
    # Also fired by the foreign key's ON DELETE SET NULL (SQLite runs its actions as updates).
    "CREATE TRIGGER IF NOT EXISTS task_counts_update "
    "AFTER UPDATE OF status, assigned_user_id ON tasks "
    "WHEN OLD.status IS NOT NEW.status OR OLD.assigned_user_id IS NOT NEW.assigned_user_id "
    f"BEGIN {_sqlite_bump(_T, _TK, _OLD_T, -1)} {_sqlite_bump(_T, _TK, _NEW_T, 1)} "
    f"{_sqlite_bump(_T, _TK, _OLD_ALL, -1)} {_sqlite_bump(_T, _TK, _NEW_ALL, 1)} END",
    "CREATE TRIGGER IF NOT EXISTS user_counts_insert AFTER INSERT ON users BEGIN "
    f"{_sqlite_bump('user_counts', 'is_approved', 'NEW.is_approved', 1)} END",
    "CREATE TRIGGER IF NOT EXISTS user_counts_delete AFTER DELETE ON users BEGIN "
    f"{_sqlite_bump('user_counts', 'is_approved', 'OLD.is_approved', -1)} END",
    "CREATE TRIGGER IF NOT EXISTS user_counts_update AFTER UPDATE OF is_approved ON users "
    "WHEN OLD.is_approved IS NOT NEW.is_approved BEGIN "
    f"{_sqlite_bump('user_counts', 'is_approved', 'OLD.is_approved', -1)} "
    f"{_sqlite_bump('user_counts', 'is_approved', 'NEW.is_approved', 1)} END",
]

# PostgreSQL: constraint triggers, DEFERRABLE INITIALLY DEFERRED, so a counter row is locked
# only while its transaction commits rather than from the write to the end of the request;
# a connection bumps its own slot's rows; and one statement bumps a change's rows in key
# order (ALL first), so two writers meeting on a slot wait for each other instead of
# deadlocking (decision 045).
POSTGRESQL_TRIGGERS = [
    f"""CREATE OR REPLACE FUNCTION task_counts_track() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
      my_slot integer := pg_backend_pid() % {SLOTS};
    BEGIN
      INSERT INTO task_counts AS c (assignee_id, status, slot, n)
      SELECT v.a, v.s, my_slot, sum(v.d) FROM (VALUES
        (coalesce(OLD.assigned_user_id, 0), OLD.status, -1, TG_OP <> 'INSERT'),
        ({ALL}, OLD.status, -1, TG_OP <> 'INSERT'),
        (coalesce(NEW.assigned_user_id, 0), NEW.status, 1, TG_OP <> 'DELETE'),
        ({ALL}, NEW.status, 1, TG_OP <> 'DELETE')) AS v (a, s, d, used)
      WHERE v.used GROUP BY v.a, v.s HAVING sum(v.d) <> 0 ORDER BY v.a, v.s
      ON CONFLICT (assignee_id, status, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
      RETURN NULL;
    END $$""",  # noqa: S608 (module constants, no input)
    """CREATE OR REPLACE FUNCTION user_counts_bump(a boolean, d integer)
    RETURNS void LANGUAGE sql AS $$
    INSERT INTO user_counts AS c (is_approved, n) VALUES (a, d)
    ON CONFLICT (is_approved) DO UPDATE SET n = c.n + EXCLUDED.n $$""",
    """CREATE OR REPLACE FUNCTION user_counts_track() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'INSERT' THEN
        PERFORM user_counts_bump(NEW.is_approved, 1);
      ELSIF TG_OP = 'DELETE' THEN
        PERFORM user_counts_bump(OLD.is_approved, -1);
      ELSIF OLD.is_approved IS DISTINCT FROM NEW.is_approved THEN
        PERFORM user_counts_bump(false, CASE WHEN NEW.is_approved THEN -1 ELSE 1 END);
        PERFORM user_counts_bump(true, CASE WHEN NEW.is_approved THEN 1 ELSE -1 END);
      END IF;
      RETURN NULL;
    END $$""",
    "DROP TRIGGER IF EXISTS task_counts_track ON tasks",
    """CREATE CONSTRAINT TRIGGER task_counts_track
    AFTER INSERT OR DELETE OR UPDATE OF status, assigned_user_id ON tasks
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION task_counts_track()""",
    "DROP TRIGGER IF EXISTS user_counts_track ON users",
    """CREATE CONSTRAINT TRIGGER user_counts_track
    AFTER INSERT OR DELETE OR UPDATE OF is_approved ON users
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION user_counts_track()""",
]

TRIGGERS_DDL = {"sqlite": SQLITE_TRIGGERS, "postgresql": POSTGRESQL_TRIGGERS}

DROP_TRIGGERS_DDL = {
    "sqlite": [f"DROP TRIGGER IF EXISTS {table}_{op}" for table in ("task_counts", "user_counts")
               for op in ("insert", "delete", "update")],
    "postgresql": ["DROP TRIGGER IF EXISTS task_counts_track ON tasks",
                   "DROP TRIGGER IF EXISTS user_counts_track ON users",
                   "DROP FUNCTION IF EXISTS task_counts_track()",
                   "DROP FUNCTION IF EXISTS user_counts_track()",
                   "DROP FUNCTION IF EXISTS user_counts_bump(boolean, integer)"],
}


create_with_schema(TRIGGERS_DDL)
