"""Request and response models for password reset, personal access tokens and sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from taskapi.schemas.common import component
from taskapi.schemas.users import Password, Strict


class ForgotIn(Strict):
    model_config = component("ForgotPassword", {"email": "ana@example.com"})

    # Not validated as an address: a malformed one is simply one with no account (202).
    email: Annotated[str, Field(min_length=1, max_length=320)]


class ForgotOut(BaseModel):
    """The same answer whatever the address."""

    model_config = ConfigDict(extra="forbid", **component("ForgotAccepted", {
        "status": "accepted",
        "detail": "If the address belongs to an approved account, a reset link is on its way; "
                  "it is valid for a short time and works once."}))

    status: Literal["accepted"] = "accepted"
    detail: str = ("If the address belongs to an approved account, a reset link is on its "
                   "way; it is valid for a short time and works once.")


class ResetIn(Strict):
    model_config = component("PasswordReset", {"token": "Zx3v0c1m1Dq6m0sQf0Wc8Q9qjH2b5xYQ",
                                                "new_password": "a new long passphrase"})

    token: Annotated[str, Field(min_length=1, max_length=256,
                                description="From the reset email.")]
    new_password: Password


Scope = Literal["read", "write"]


class TokenCreate(Strict):
    model_config = component("NewPersonalToken", {"name": "CI deploy script",
                                                    "scopes": ["read"], "expires_in_days": 90})

    name: Annotated[str, Field(min_length=1, max_length=100)]
    scopes: list[Scope] = Field(description='`["read"]` or `["read", "write"]`.')
    expires_in_days: Annotated[int, Field(ge=1, le=365)] | None = Field(
        30, description="1-365, or null for a token that does not expire.")

    @field_validator("name")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value

    @field_validator("scopes")
    @classmethod
    def _known_sets(cls, value: list[Scope]) -> list[Scope]:
        if sorted(set(value)) not in (["read"], ["read", "write"]) or len(set(value)) != len(value):
            raise ValueError('must be ["read"] or ["read", "write"]')
        return ["read", "write"] if "write" in value else ["read"]

    @property
    def scope(self) -> Scope:
        return "write" if "write" in self.scopes else "read"


class TokenOut(BaseModel):
    model_config = component("PersonalToken", {
        "id": 12, "name": "CI deploy script", "scopes": ["read"],
        "created_at": "2026-12-02T09:00:00Z", "expires_at": "2027-03-02T09:00:00Z",
        "last_used_at": "2026-12-02T10:15:00Z"})

    id: int
    name: str
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(None, description="To within a minute.")


class TokenCreated(BaseModel):
    """The token itself appears here only: it is stored as a hash."""

    model_config = component("CreatedPersonalToken", {
        "id": 12, "name": "CI deploy script", "scopes": ["read"],
        "token": "tka_12.3.w.1767225600.Qm9vdHN0cmFwTm9uY2U.c2lnbmF0dXJlLW9mLXRoZS10b2tlbi1tYWM",
        "created_at": "2026-12-02T09:00:00Z", "expires_at": "2027-03-02T09:00:00Z"})

    id: int
    name: str
    scopes: list[Scope]
    token: str = Field(description="`tka_…`: send it as `Authorization: Bearer tka_…`.")
    created_at: datetime
    expires_at: datetime | None


class SessionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, **component("Session", {
        "id": "3f6c1a9e2b7d4c8e9a0b1c2d3e4f5a6b", "created_at": "2026-12-01T08:00:00Z",
        "last_used_at": "2026-12-02T09:30:00Z", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
        "ip": "203.0.113.9", "current": True}))

    id: str
    created_at: datetime
    last_used_at: datetime
    user_agent: str | None
    ip: str | None
    current: bool = Field(description="The session this request belongs to.")
