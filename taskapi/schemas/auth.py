from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from taskapi.schemas.users import Strict


class LoginIn(Strict):
    # Not validated as an address: a malformed one is simply an unknown account (401).
    email: Annotated[str, Field(min_length=1, max_length=320)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class RefreshIn(Strict):
    refresh_token: Annotated[str, Field(min_length=1, max_length=4096)]


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (the OAuth token type, not a secret)
    expires_in: int = Field(description="Seconds until the access token expires.")
