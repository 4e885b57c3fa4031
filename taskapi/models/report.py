from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from taskapi.models.base import Base, UTCDateTime, string_enum, utcnow


class ReportStatus(enum.StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETE = "complete"
    FAILED = "failed"


class ReportTrigger(enum.StrEnum):
    REQUESTED = "requested"  # POST /reports
    SCHEDULED = "scheduled"  # the user's report_schedule (services/scheduled_reports.py)


class ReportRequest(Base):
    """A summary report for a manager or admin, asked for or scheduled; emailed to them by
    the worker. A scheduled one's id is derived from its user and period (one per period)."""

    __tablename__ = "report_requests"
    __table_args__ = (Index("ix_report_requests_requester", "requester_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    requester_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    period_days: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[ReportTrigger] = mapped_column(
        string_enum(ReportTrigger, "report_trigger"), default=ReportTrigger.REQUESTED,
        server_default=ReportTrigger.REQUESTED.value,
    )
    # What the report covers: set when it is scheduled, or (asked for) when it is built.
    period_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    period_end: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    status: Mapped[ReportStatus] = mapped_column(
        string_enum(ReportStatus, "report_status"),
        default=ReportStatus.QUEUED,
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
