from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from taskapi.models import ReportStatus, ReportTrigger
from taskapi.schemas.users import Strict


class ReportCreate(Strict):
    period_days: int = Field(7, ge=1, le=366, description="Days the report looks back.")


class ReportOut(BaseModel):
    job_id: str
    status: ReportStatus
    trigger: ReportTrigger = Field(
        ReportTrigger.REQUESTED, description="requested (POST /reports) or scheduled "
        "(the recipient's report_schedule).")
    period_days: int
    period_start: datetime | None = Field(
        None, description="What the report covers, from (set when scheduled or built).")
    period_end: datetime | None = Field(None, description="What the report covers, until.")
    created_at: datetime
    finished_at: datetime | None = None
