"""A task's history and comments."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from taskapi.schemas.users import Strict


class PageQuery(Strict):
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=512)


class Change(BaseModel):
    from_: Any = Field(alias="from", serialization_alias="from")
    to: Any

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class HistoryEntry(BaseModel):
    id: int
    at: datetime
    actor_id: int | None
    action: str = Field(description="created, updated, status_changed, assigned (also "
                                    "unassigned), deleted or commented")
    changes: dict[str, Change]


CommentBody = Annotated[str, StringConstraints(min_length=1, max_length=5000)]


class CommentIn(Strict):
    body: CommentBody = Field(description="Plain text, 1 to 5,000 characters.")


class CommentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    task_id: int
    author_id: int | None
    body: str
    created_at: datetime
    edited_at: datetime | None
