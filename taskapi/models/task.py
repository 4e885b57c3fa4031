from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, ForeignKey, Index, Integer, String, Text, func, literal
from sqlalchemy.orm import Mapped, mapped_column

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
# tie, broken by id): one expression for lists and emails.
FAR_FUTURE = datetime.max.replace(tzinfo=UTC)


def deadline_nulls_last() -> ColumnElement[datetime]:
    return func.coalesce(Task.deadline, literal(FAR_FUTURE, UTCDateTime()))
