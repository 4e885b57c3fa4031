"""Request and response models for tasks and statistics."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from taskapi.models import TaskStatus
from taskapi.schemas.common import Id, component, in_utc
from taskapi.schemas.users import Strict


def _read(value: object) -> object:
    """A date means 00:00 UTC that day; other text is read as ISO 8601 (what this cannot
    read, pydantic tries)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                return datetime.combine(date.fromisoformat(text), time.min, tzinfo=UTC)
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return value
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime.combine(value, time.min, tzinfo=UTC)
    return value


UTCInstant = Annotated[
    datetime,
    BeforeValidator(_read),
    AfterValidator(in_utc),  # without an offset, or out of range in UTC: 422
    Field(description="ISO 8601 date (`2030-01-15`, meaning 00:00 UTC) or datetime with an "
                      "offset (`Z`, `+01:00`); one without an offset is a 422 "
                      "(`naive_datetime`). Returned in UTC.",
          examples=["2030-01-15", "2030-01-15T17:00:00+01:00"]),
]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, Field(max_length=10_000)]
StatusName = Literal["pending", "in-progress", "completed"]
SortName = Literal["created_at", "-created_at", "deadline", "-deadline", "status"]


class TaskCreate(Strict):
    model_config = component("NewTask", {"title": "Prepare the Q1 budget",
                                         "description": "Numbers from finance by Friday.",
                                         "deadline": "2026-12-24T17:00:00+01:00",
                                         "assigned_user_id": 2})

    title: Title
    description: Description = ""
    deadline: UTCInstant | None = None
    assigned_user_id: Id | None = Field(None, description="An approved user; emailed.")


class TaskUpdate(Strict):
    """Partial update: only the fields sent change; `deadline: null` clears it."""

    model_config = component("TaskUpdate", {"title": "Prepare the Q1 budget (draft)",
                                            "deadline": "2027-01-08"})

    title: Title | None = None
    description: Description | None = None
    deadline: UTCInstant | None = None

    @model_validator(mode="after")
    def _title_and_description_not_null(self) -> TaskUpdate:
        for name in ("title", "description"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class TaskStatusUpdate(Strict):
    model_config = component("StatusChange", {"status": "in-progress"})

    status: TaskStatus  # the Task's own enum: one TaskStatus type in a generated client


class TaskAssign(Strict):
    model_config = component("Assignment", {"user_id": 2})

    user_id: Id | None = Field(description="An approved user, or null to unassign.")


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, **component("Task", {
        "id": 4, "title": "Prepare the Q1 budget", "description": "Numbers from finance by "
        "Friday.", "status": "in-progress", "deadline": "2026-12-24T16:00:00Z",
        "assigned_user_id": 2, "created_by": 1, "created_at": "2026-12-02T09:00:00Z",
        "updated_at": "2026-12-02T11:15:00Z", "completed_at": None}))

    id: int
    title: str
    description: str
    status: TaskStatus
    deadline: datetime | None
    assigned_user_id: int | None
    created_by: int | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None


class _TaskFilters(Strict):
    status: TaskStatus | None = None
    due_before: UTCInstant | None = None
    due_after: UTCInstant | None = None
    q: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        None, description="Case-insensitive substring of title or description.")
    sort: SortName = "created_at"
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=512)


class TaskListQuery(_TaskFilters):
    """`GET /tasks`: every filter."""

    assigned_user_id: Id | None = None


class MyTaskListQuery(_TaskFilters):
    """What `GET /tasks/mine` documents: its list is always the caller's, so no
    `assigned_user_id` (still accepted and ignored, as before, so old clients keep working)."""


class Stats(BaseModel):
    model_config = component("Stats", {
        "total_users": 5, "total_tasks": 12, "completed_tasks": 4,
        "tasks_by_status": {"pending": 6, "in-progress": 2, "completed": 4},
        "overdue_tasks": 1, "pending_approvals": 1})

    total_users: int
    total_tasks: int
    completed_tasks: int
    tasks_by_status: dict[StatusName, int]
    overdue_tasks: int = Field(description="Not completed, deadline passed.")
    pending_approvals: int
