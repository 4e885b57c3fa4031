from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Boolean, Index, Integer, String, false, func
from sqlalchemy.orm import Mapped, mapped_column, validates

from taskapi.models.base import Base, UTCDateTime, string_enum, utcnow


class Role(enum.StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    EMPLOYEE = "employee"


class ReportSchedule(enum.StrEnum):
    """How often an admin or manager gets the summary report by email."""

    DAILY = "daily"
    WEEKLY = "weekly"
    OFF = "off"


class User(Base):
    __tablename__ = "users"
    # AUTOINCREMENT: ids are never reused, so an old token can never match a new user.
    __table_args__ = (
        Index("ix_users_pending", "is_approved", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(40), unique=True)
    # Stored lower-cased: uniqueness and login are case-insensitive.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(
        string_enum(Role, "user_role"),
        default=Role.EMPLOYEE,
    )
    is_approved: Mapped[bool] = mapped_column(Boolean, default=False)
    # The owner followed the link of the welcome email (POST /email/confirm).
    email_confirmed: Mapped[bool] = mapped_column(Boolean, default=False,
                                                  server_default=false())
    timezone: Mapped[str | None] = mapped_column(String(64), default=None)
    # Staff only (weekly unless they chose); employees have none. Kept so by _role_set.
    report_schedule: Mapped[ReportSchedule | None] = mapped_column(
        string_enum(ReportSchedule, "report_schedule"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, server_default=func.current_timestamp()
    )
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, server_default=func.current_timestamp()
    )
    # Moves on every change (Core UPDATEs set version + 1 too): the ETag of GET /users/{id}
    # and what an If-Match PUT compares in its UPDATE (decision 024).
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    __mapper_args__ = {"version_id_col": version}

    @validates("role")
    def _role_set(self, _key: str, role: Role) -> Role:
        """Employees have no report schedule; a user made staff starts with weekly reports
        (or keeps the schedule they have)."""
        if role == Role.EMPLOYEE:
            self.report_schedule = None
        elif self.report_schedule is None:
            self.report_schedule = ReportSchedule.WEEKLY
        return role
