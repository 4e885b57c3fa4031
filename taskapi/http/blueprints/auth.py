"""Registration, login, token refresh, logout and the caller's own account."""

from __future__ import annotations

from quart import Blueprint, request
from quart_schema import DataSource, tag, validate_request, validate_response

from taskapi.core.errors import APIError
from taskapi.http.client import client_ip
from taskapi.http.current import db_session, runtime
from taskapi.http.deps import actor, require_role
from taskapi.http.headers import no_store
from taskapi.http.openapi import no_content, no_location, problems
from taskapi.http.safe_writes import idempotent
from taskapi.schemas.auth import LoginIn, OAuthError, PasswordGrant, RefreshIn, TokenPair
from taskapi.schemas.users import (
    EmailConfirm,
    MeUpdate,
    PasswordChange,
    Registration,
    UserCreate,
    UserOut,
)
from taskapi.services import accounts, confirmations

bp = Blueprint("auth", __name__)
tag_ = tag(["auth"])


@bp.post("/register")
@tag_
@validate_request(UserCreate)
@idempotent(lambda registration: (registration, 202, {}), anonymous=True)
@validate_response(Registration, 202)
@no_location
@problems(409)
async def register(data: UserCreate) -> tuple[Registration, int, dict[str, str]]:
    """Register as an employee or manager (202 whether or not the email has an account)."""
    return await accounts.register(db_session(), runtime(), data), 202, {}


@bp.post("/email/confirm")
@tag_
@validate_request(EmailConfirm)
@no_content
@problems(400)
async def confirm_email(data: EmailConfirm) -> tuple[str, int]:
    """Confirm your email address with the token from the welcome email (single use)."""
    await confirmations.confirm(db_session(), runtime(), data)
    return "", 204


@bp.post("/login")
@tag_
@no_store
@validate_request(LoginIn)
@validate_response(TokenPair)
@problems(401, 403)
async def login(data: LoginIn) -> TokenPair:
    """Exchange email and password for an access and a refresh token."""
    return await accounts.login(db_session(), runtime(), data, client_ip(),
                                request.headers.get("User-Agent"))


# A /login refusal in RFC 6749 §5.2 terms: wrong credentials and a pending account are both
# invalid_grant (400). A rate limit (429) or a busy server (503) stays a problem+json with
# Retry-After, as on every route.
_REFUSED = frozenset({401, 403})
OAuthAnswer = tuple[OAuthError, int, dict[str, str]]


def _oauth_error(status: int, error: str, description: str) -> OAuthAnswer:
    return (OAuthError(error=error, error_description=description), status,
            {"Pragma": "no-cache"})


@bp.post("/token")
@tag_
@no_store
@validate_request(PasswordGrant, source=DataSource.FORM)
@validate_response(TokenPair)
@validate_response(OAuthError, 400)
async def oauth_token(data: PasswordGrant) -> TokenPair | OAuthAnswer:
    """OAuth2 password grant (form: grant_type=password, username=email, password)."""
    if data.grant_type != "password":
        if not data.grant_type:
            return _oauth_error(400, "invalid_request", "grant_type is required.")
        return _oauth_error(400, "unsupported_grant_type", "Only grant_type=password.")
    if not data.username or not data.password:
        return _oauth_error(400, "invalid_request", "username (your email) and password "
                                                    "are required.")
    try:
        return await accounts.login(db_session(), runtime(),
                                    LoginIn(email=data.username, password=data.password),
                                    client_ip(), request.headers.get("User-Agent"))
    except APIError as error:
        if error.status not in _REFUSED:
            raise
        return _oauth_error(400, "invalid_grant", error.detail or error.code)


@bp.post("/token/refresh")
@tag_
@no_store
@validate_request(RefreshIn)
@validate_response(TokenPair)
@problems(401)
async def refresh(data: RefreshIn) -> TokenPair:
    """Rotate a refresh token: a new pair; the old refresh token stops working."""
    return await accounts.refresh(db_session(), runtime(), data)


@bp.post("/logout")
@tag_
@require_role()
@no_content
async def logout() -> tuple[str, int]:
    """Revoke this session: the access token and its refresh family."""
    await accounts.logout(db_session(), runtime(), actor())
    return "", 204


@bp.get("/me")
@tag_
@require_role()
@validate_response(UserOut)
async def me() -> UserOut:
    """Your account."""
    return await accounts.get_me(db_session(), actor())


@bp.put("/me")
@tag_
@require_role()
@validate_request(MeUpdate)
@validate_response(UserOut)
async def update_me(data: MeUpdate) -> UserOut:
    """Update your own settings (timezone; report schedule for admins and managers)."""
    return await accounts.update_me(db_session(), actor(), data)


@bp.put("/me/password")
@tag_
@require_role()
@validate_request(PasswordChange)
@no_content
async def change_password(data: PasswordChange) -> tuple[str, int]:
    """Change your password; every other session of yours is revoked."""
    await accounts.change_password(db_session(), runtime(), actor(), data)
    return "", 204
