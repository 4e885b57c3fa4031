from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from taskapi.schemas.common import component
from taskapi.schemas.users import Strict


class LoginIn(Strict):
    model_config = component("Login", {"email": "ada@example.com",
                                       "password": "correct horse battery"})

    # Not validated as an address: a malformed one is simply an unknown account (401).
    email: Annotated[str, Field(min_length=1, max_length=320)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class RefreshIn(Strict):
    model_config = component("Refresh", {"refresh_token": "eyJhbGciOiJIUzI1NiJ9.eyJ0eXBlIjoi"
                                                           "cmVmcmVzaCJ9.c2lnbmF0dXJl"})

    refresh_token: Annotated[str, Field(min_length=1, max_length=4096)]


class TokenPair(BaseModel):
    model_config = component("TokenPair", {
        "access_token": "eyJhbGciOiJIUzI1NiJ9.eyJ0eXBlIjoiYWNjZXNzIn0.c2lnbmF0dXJl",
        "refresh_token": "eyJhbGciOiJIUzI1NiJ9.eyJ0eXBlIjoicmVmcmVzaCJ9.c2lnbmF0dXJl",
        "token_type": "bearer", "expires_in": 900})

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
    """An OAuth2 token error (RFC 6749 §5.2), as POST /token answers it."""

    model_config = component("OAuthError", {
        "error": "invalid_grant", "error_description": "Wrong email or password."})

    error: str
    error_description: str
