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


class PasswordGrant(BaseModel):
    """OAuth2 password grant (RFC 6749 §4.3), form-encoded; checked by the route, so every
    error is in RFC 6749 §5.2 form. Other fields (client_id, scope) are ignored."""

    grant_type: str | None = Field(None, description="`password`.", max_length=64)
    username: str | None = Field(None, description="Your email address.", max_length=320)
    password: str | None = Field(None, max_length=1024)
    scope: str | None = Field(None, description="Ignored.", max_length=1024)


class OAuthError(BaseModel):
    error: str
    error_description: str
