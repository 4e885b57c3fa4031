from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    case,
    func,
    literal,
    literal_column,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.elements import Grouping

from taskapi.models.base import Base, UTCDateTime, string_enum, utcnow


class TaskStatus(enum.StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_assignee_created", "assigned_user_id", "created_at", "id"),
        Index("ix_tasks_created", "created_at", "id"),
        Index("ix_tasks_status_created", "status", "created_at", "id"),
        Index("ix_tasks_status_id", "status", "id"),
        Index("ix_tasks_status_deadline", "status", "deadline"),
        Index("ix_tasks_deadline", "deadline", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[TaskStatus] = mapped_column(
        string_enum(TaskStatus, "task_status"),
        default=TaskStatus.PENDING,
    )
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    assigned_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, server_default=func.current_timestamp()
    )
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, server_default=func.current_timestamp()
    )
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Counts assignments, so each one gets its own email dedupe key assign:{task}:{user}:{n}.
    assign_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Moves on every change (also Core UPDATEs: they set version + 1): the ETag, and what an
    # If-Match write compares in its UPDATE … WHERE version = ? (decision 024).
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    __mapper_args__ = {"version_id_col": version}


# NULL deadlines sort after every real one (ascending), even the latest instant there is (a
# tie, broken by id): one expression for lists and emails. The constant is written into the
# SQL, not bound: an index on the expression serves only the same text (decision 046).
FAR_FUTURE = datetime.max.replace(tzinfo=UTC)


class _FarFuture(ColumnElement[datetime]):
    """FAR_FUTURE as a constant of the SQL: on PostgreSQL 'infinity', which is what asyncpg
    sends for datetime.max (so a cursor at a NULL deadline binds the same value)."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(_FarFuture)
def _far_future(element: _FarFuture, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(literal(FAR_FUTURE, UTCDateTime()),
                                **{**kw, "literal_binds": True}))


@compiles(_FarFuture, "postgresql")
def _far_future_pg(element: _FarFuture, compiler: Any, **kw: Any) -> str:
    return "'infinity'::timestamptz"


def deadline_nulls_last() -> ColumnElement[datetime]:
    return func.coalesce(Task.deadline, _FarFuture())


def due_range(before: Any, after: Any, *, below_far: bool = False
              ) -> list[ColumnElement[bool]]:
    """deadline < before / deadline >= after, written on deadline_nulls_last() so that its
    indexes bound the range (ix_tasks_due and the status's and assignee's). NULLs are
    FAR_FUTURE there: `after` keeps a task due at FAR_FUTURE itself and drops those with no
    deadline by a check on the row (a walk that reaches FAR_FUTURE reads the NULLs), or,
    `below_far`, ends the range below FAR_FUTURE (the due probe, which looks up the tasks
    due at FAR_FUTURE itself apart: FAR_DUE)."""
    key = deadline_nulls_last()
    bounds = [] if before is None else [key < before]
    if after is None:
        return bounds
    top = key < _FarFuture() if below_far else Task.deadline.is_not(None)
    return [*bounds, key >= after, top]


def far_due() -> ColumnElement[bool]:
    """Due at FAR_FUTURE itself (the largest instant): one lookup in ix_tasks_deadline."""
    return Task.deadline == _FarFuture()


STATUS_ORDER = [TaskStatus.PENDING, TaskStatus.IN_PROGRESS, TaskStatus.COMPLETED]


def status_rank() -> ColumnElement[int]:
    """pending 0, in-progress 1, completed 2: the `status` sort, with its values written into
    the SQL like the index on it."""
    return case({literal_column(f"'{s.value}'"): literal_column(str(i))
                 for i, s in enumerate(STATUS_ORDER)},
                value=Task.status, else_=literal_column(str(len(STATUS_ORDER))))


# Each list sort, alone and after a status or assignee filter, walks an index in order: a
# keyset page reads its rows and stops (decision 046). created_at alone and after the
# assignee: the indexes in Task.__table_args__.
# (PostgreSQL takes an expression other than a function call only in parentheses: Grouping.)
# Not reflected alike on both databases: autogenerate leaves these out (migrations/env.py).
EXPRESSION_INDEXES = frozenset({"ix_tasks_due", "ix_tasks_status_due", "ix_tasks_assignee_due",
                                "ix_tasks_rank", "ix_tasks_assignee_rank"})
Index("ix_tasks_due", Grouping(deadline_nulls_last()), Task.id)
Index("ix_tasks_status_due", Task.status, Grouping(deadline_nulls_last()), Task.id)
Index("ix_tasks_assignee_due", Task.assigned_user_id, Grouping(deadline_nulls_last()), Task.id)
Index("ix_tasks_rank", Grouping(status_rank()), Task.id)
Index("ix_tasks_assignee_rank", Task.assigned_user_id, Grouping(status_rank()), Task.id)
