"""The task event log: a task's history and the live-event stream read the same rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from taskapi.models.base import Base, UTCDateTime, utcnow


class TaskEvent(Base):
    """One change to a task, written in the change's own transaction (services/events.py).

    `id` increases in commit order (decision 022), so a reader that has seen id N has seen
    every event committed before it. No foreign key on `task_id` or `actor_id`: the history
    of a deleted task, and the actor of a deleted user, stay readable (decision 021).
    """

    __tablename__ = "task_events"
    __table_args__ = (
        Index("ix_task_events_task", "task_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    task_id: Mapped[int] = mapped_column(Integer)
    actor_id: Mapped[int | None] = mapped_column(Integer, default=None)
    # The user ids this event concerns (assignee, previous assignee): who of the employees
    # may see it.
    audience: Mapped[list[int]] = mapped_column(JSON, default=list)
    # The task as GET /task/{id} returns it ({"id"} once deleted).
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # {field: {"from", "to"}}: what the history shows.
    changes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
