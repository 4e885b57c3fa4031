"""Tasks per (status, UTC day of the deadline), kept by triggers like task_counts (decision
045): what makes `/stats`' overdue count a sum instead of a count of every overdue task.

Overdue at `now` = the open tasks due on a day before today (a sum over task_due_counts' rows
of the days before today) + those due today before `now` (a range of ix_tasks_status_deadline
within one day). Tasks without a deadline have no row. `due_day` is 'YYYY-MM-DD' (UTC): text
that sorts as the days do. On PostgreSQL each connection bumps its own slot's rows, and the
trigger is deferred to commit, as for task_counts; SQLite uses slot 0.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Integer, String, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.functions import FunctionElement

from taskapi.models.base import Base, create_with_schema
from taskapi.models.counts import SLOTS
from taskapi.models.task import Task


class TaskDueCount(Base):
    __tablename__ = "task_due_counts"

    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    due_day: Mapped[str] = mapped_column(String(10), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False,
                                      server_default="0")
    n: Mapped[int] = mapped_column(Integer, default=0)


# The day of a deadline, as the triggers write it ('infinity', asyncpg's datetime.max, has
# no day in to_char: the last one there is).
_SQLITE_DAY = "substr({0}, 1, 10)"
_PG_DAY = "coalesce(to_char({0} AT TIME ZONE 'UTC', 'YYYY-MM-DD'), '9999-12-31')"


class due_day(FunctionElement[str]):
    """due_day(deadline): the deadline's UTC day as task_due_counts keys it."""

    name = "due_day"
    type = String()
    inherit_cache = True


@compiles(due_day, "sqlite")
def _due_day_sqlite(element: due_day, compiler: Any, **kw: Any) -> str:
    return _SQLITE_DAY.format(compiler.process(element.clauses, **kw))


@compiles(due_day, "postgresql")
def _due_day_pg(element: due_day, compiler: Any, **kw: Any) -> str:
    return _PG_DAY.format(compiler.process(element.clauses, **kw))


def due_counts_from_rows() -> Any:
    """What task_due_counts should sum to: (status, due_day, n) counted from the tasks."""
    day: ColumnElement[str] = due_day(Task.deadline)
    return (select(Task.status, day, func.count()).where(Task.deadline.is_not(None))
            .group_by(Task.status, day))


def _sqlite_bump(row: str, delta: int) -> str:
    return (f"INSERT INTO task_due_counts (status, due_day, n) SELECT {row}.status, "
            f"{_SQLITE_DAY.format(row + '.deadline')}, {delta} "
            f"WHERE {row}.deadline IS NOT NULL "
            "ON CONFLICT (status, due_day, slot) DO UPDATE SET n = n + excluded.n;")


SQLITE_TRIGGERS = [
    "CREATE TRIGGER IF NOT EXISTS task_due_counts_insert AFTER INSERT ON tasks "
    f"BEGIN {_sqlite_bump('NEW', 1)} END",
    "CREATE TRIGGER IF NOT EXISTS task_due_counts_delete AFTER DELETE ON tasks "
    f"BEGIN {_sqlite_bump('OLD', -1)} END",
    "CREATE TRIGGER IF NOT EXISTS task_due_counts_update AFTER UPDATE OF status, deadline "
    "ON tasks WHEN OLD.status IS NOT NEW.status OR OLD.deadline IS NOT NEW.deadline "
    f"BEGIN {_sqlite_bump('OLD', -1)} {_sqlite_bump('NEW', 1)} END",
]

POSTGRESQL_TRIGGERS = [
    f"""CREATE OR REPLACE FUNCTION task_due_counts_track() RETURNS trigger LANGUAGE plpgsql
    AS $$
    DECLARE
      my_slot integer := pg_backend_pid() % {SLOTS};
    BEGIN
      INSERT INTO task_due_counts AS c (status, due_day, slot, n)
      SELECT v.s, v.d, my_slot, sum(v.n) FROM (VALUES
        (OLD.status, {_PG_DAY.format('OLD.deadline')}, -1,
         TG_OP <> 'INSERT' AND OLD.deadline IS NOT NULL),
        (NEW.status, {_PG_DAY.format('NEW.deadline')}, 1,
         TG_OP <> 'DELETE' AND NEW.deadline IS NOT NULL)) AS v (s, d, n, used)
      WHERE v.used GROUP BY v.s, v.d HAVING sum(v.n) <> 0 ORDER BY v.s, v.d
      ON CONFLICT (status, due_day, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
      RETURN NULL;
    END $$""",  # noqa: S608 (module constants, no input)
    "DROP TRIGGER IF EXISTS task_due_counts_track ON tasks",
    """CREATE CONSTRAINT TRIGGER task_due_counts_track
    AFTER INSERT OR DELETE OR UPDATE OF status, deadline ON tasks
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION task_due_counts_track()""",
]

DUE_TRIGGERS_DDL = {"sqlite": SQLITE_TRIGGERS, "postgresql": POSTGRESQL_TRIGGERS}

DROP_DUE_TRIGGERS_DDL = {
    "sqlite": [f"DROP TRIGGER IF EXISTS task_due_counts_{op}"
               for op in ("insert", "delete", "update")],
    "postgresql": ["DROP TRIGGER IF EXISTS task_due_counts_track ON tasks",
                   "DROP FUNCTION IF EXISTS task_due_counts_track()"],
}


create_with_schema(DUE_TRIGGERS_DDL)
