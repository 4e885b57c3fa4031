from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from taskapi.models import ReportStatus, ReportTrigger
from taskapi.schemas.common import component
from taskapi.schemas.users import Strict


class ReportCreate(Strict):
    model_config = component("ReportRequest", {"period_days": 30})

    period_days: int = Field(7, ge=1, le=366, description="Days the report looks back.")


class ReportOut(BaseModel):
    model_config = component("Report", {
        "job_id": "3f2b9c0e5d8a4b71a6c4e2f0d9b8a7c6", "status": "queued",
        "trigger": "requested", "period_days": 30, "period_start": None, "period_end": None,
        "created_at": "2026-12-02T10:00:00Z", "finished_at": None})

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
