from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from taskapi.models import ReportStatus
from taskapi.schemas.users import Strict


class ReportCreate(Strict):
    period_days: int = Field(7, ge=1, le=366, description="Days the report looks back.")


class ReportOut(BaseModel):
    job_id: str
    status: ReportStatus
    period_days: int
    created_at: datetime
    finished_at: datetime | None = None
