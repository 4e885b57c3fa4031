"""A task's history and comments."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from taskapi.schemas.common import component
from taskapi.schemas.users import Strict


class PageQuery(Strict):
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=512)


class Change(BaseModel):
    from_: Any = Field(alias="from", serialization_alias="from")
    to: Any

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True,
                              **component("Change", {"from": "pending", "to": "in-progress"}))


class HistoryEntry(BaseModel):
    model_config = component("HistoryEntry", {
        "id": 7, "at": "2026-12-02T09:30:00Z", "actor_id": 3, "action": "status_changed",
        "changes": {"status": {"from": "pending", "to": "in-progress"}}})

    id: int
    at: datetime
    actor_id: int | None
    action: str = Field(description="created, updated, status_changed, assigned (also "
                                    "unassigned), deleted or commented")
    changes: dict[str, Change]


CommentBody = Annotated[str, StringConstraints(min_length=1, max_length=5000)]


class CommentIn(Strict):
    model_config = component("CommentText", {"body": "The draft is in the shared folder."})

    body: CommentBody = Field(description="Plain text, 1 to 5,000 characters.")


class CommentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, **component("Comment", {
        "id": 12, "task_id": 4, "author_id": 3, "body": "The draft is in the shared folder.",
        "created_at": "2026-12-02T09:31:00Z", "edited_at": None}))

    id: int
    task_id: int
    author_id: int | None
    body: str
    created_at: datetime
    edited_at: datetime | None
