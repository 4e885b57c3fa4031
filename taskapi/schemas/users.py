"""Request and response models for accounts and users."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from taskapi.models import ReportSchedule, Role
from taskapi.schemas.common import Email, component

Username = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=3, max_length=40,
                           pattern=r"^[A-Za-z0-9_.-]+$")
]
# Upper bound keeps argon2 work per request bounded.
Password = Annotated[str, Field(min_length=8, max_length=1024)]


def _iana(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("unknown IANA timezone, e.g. Europe/Berlin") from None
    return value


Timezone = Annotated[str, Field(max_length=64), AfterValidator(_iana)]


class Strict(BaseModel):
    """Unknown fields are refused (422), so nothing can be mass-assigned. So is a NUL
    character in any text: PostgreSQL cannot store one (asyncpg would fail with a 500)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL (\\u0000) characters")
        return value


class UserCreate(Strict):
    model_config = component("NewAccount", {"username": "ada", "email": "ada@example.com",
                                            "password": "correct horse battery",
                                            "role": "employee"})

    username: Username
    email: Email
    password: Password
    role: Literal["employee", "manager"] = Field(
        "employee", description="`admin` cannot be requested; admins are made by admins."
    )


class Registration(BaseModel):
    """The answer to a registration: the same whether or not the email has an account."""

    model_config = component("Registration", {"username": "ada", "email": "ada@example.com",
                                              "status": "pending_approval"})

    username: str
    email: str
    status: Literal["pending_approval"] = "pending_approval"


class EmailConfirm(Strict):
    model_config = component("EmailConfirmation", {"token": "Vb3k9Qm2xZ8tR1nL5pW7yC4dF6hJ0sA"})

    token: Annotated[str, Field(max_length=256, description="From the welcome email.")]


USER_EXAMPLE = {"id": 2, "username": "ada", "email": "ada@example.com", "role": "employee",
                "is_approved": True, "email_confirmed": True, "timezone": "Europe/Berlin",
                "report_schedule": None, "created_at": "2026-12-01T09:30:00Z"}


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, **component("User", USER_EXAMPLE))

    id: int
    username: str
    email: str
    role: Role
    is_approved: bool
    email_confirmed: bool
    timezone: str | None
    report_schedule: ReportSchedule | None = Field(
        None, description="Admins and managers: daily, weekly or off; employees: null.")
    created_at: datetime


class UserAdminUpdate(Strict):
    model_config = component("UserUpdate", {"role": "manager", "is_approved": True})

    role: Role | None = None
    is_approved: bool | None = None


class MeUpdate(Strict):
    model_config = component("MeUpdate", {"timezone": "Europe/Berlin",
                                          "report_schedule": "daily"})

    timezone: Timezone | None = Field(
        None, description="IANA zone for your reminders and reports; null uses the server's."
    )
    report_schedule: ReportSchedule | None = Field(
        None, description="Admins and managers: your summary report by email, daily, weekly "
        "(the default) or off, at REPORT_HOUR your time (weekly: on REPORT_WEEKDAY). "
        "Employees have none (422).")

    @field_validator("report_schedule")
    @classmethod
    def _not_null(cls, value: ReportSchedule | None) -> ReportSchedule:
        if value is None:
            raise ValueError("must be daily, weekly or off")
        return value


class PasswordChange(Strict):
    model_config = component("PasswordChange", {"current_password": "correct horse battery",
                                                "new_password": "a longer passphrase now"})

    current_password: Annotated[str, Field(max_length=1024)]
    new_password: Password


class UserListQuery(Strict):
    role: Role | None = None
    is_approved: bool | None = None
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=512)
