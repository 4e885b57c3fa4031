"""Request and response models for password reset, personal access tokens and sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from taskapi.schemas.users import Password, Strict


class ForgotIn(Strict):
    # Not validated as an address: a malformed one is simply one with no account (202).
    email: Annotated[str, Field(min_length=1, max_length=320)]


class ForgotOut(BaseModel):
    """The same answer whatever the address."""

    status: Literal["accepted"] = "accepted"
    detail: str = ("If the address belongs to an approved account, a reset link is on its "
                   "way; it is valid for a short time and works once.")


class ResetIn(Strict):
    token: Annotated[str, Field(min_length=1, max_length=256,
                                description="From the reset email.")]
    new_password: Password


Scope = Literal["read", "write"]


class TokenCreate(Strict):
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
    id: int
    name: str
    scopes: list[Scope]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(None, description="To within a minute.")


class TokenCreated(BaseModel):
    """The token itself appears here only: it is stored as a hash."""

    id: int
    name: str
    scopes: list[Scope]
    token: str = Field(description="`tka_…`: send it as `Authorization: Bearer tka_…`.")
    created_at: datetime
    expires_at: datetime | None


class SessionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    created_at: datetime
    last_used_at: datetime
    user_agent: str | None
    ip: str | None
    current: bool = Field(description="The session this request belongs to.")
