"""Accounts people run themselves: password reset, personal access tokens, their sessions."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import tag, validate_request, validate_response

from taskapi.http.client import client_ip
from taskapi.http.current import db_session, runtime
from taskapi.http.deps import actor, require_role
from taskapi.http.headers import no_store
from taskapi.http.openapi import no_content, no_location, problems
from taskapi.http.responses import ListResponse, whole_list
from taskapi.models import Role
from taskapi.schemas.self_service import (
    ForgotIn,
    ForgotOut,
    ResetIn,
    SessionOut,
    TokenCreate,
    TokenCreated,
    TokenOut,
)
from taskapi.services import device_sessions, password_reset, personal_tokens

bp = Blueprint("account", __name__)
tag_ = tag(["account"])


@bp.post("/password/forgot")
@tag_
@validate_request(ForgotIn)
@validate_response(ForgotOut, 202)
@no_location
async def forgot_password(data: ForgotIn) -> tuple[ForgotOut, int]:
    """Ask for a password reset link by email (202 whatever the address)."""
    await password_reset.forgot(runtime(), data, client_ip())
    return ForgotOut(), 202


@bp.post("/password/reset")
@tag_
@validate_request(ResetIn)
@no_content
@problems(400)
async def reset_password(data: ResetIn) -> tuple[str, int]:
    """Set a new password with the emailed token (single use); every session ends."""
    await password_reset.reset(db_session(), runtime(), data)
    return "", 204


@bp.get("/me/tokens")
@tag_
@require_role()
@validate_response(list[TokenOut])
async def my_tokens() -> ListResponse:
    """Your personal access tokens (never the secrets), with their last use."""
    return whole_list(await personal_tokens.list_mine(db_session(), runtime(), actor()))


@bp.post("/me/tokens")
@tag_
@require_role()
@no_store
@validate_request(TokenCreate)
@validate_response(TokenCreated, 201)
@problems(409)
async def create_token(data: TokenCreate) -> tuple[TokenCreated, int, dict[str, str]]:
    """Create a personal access token (`tka_…`, shown only in this answer); login only."""
    created = await personal_tokens.create(db_session(), runtime(), actor(), data)
    return created, 201, {"Location": f"/me/tokens/{created.id}"}


@bp.delete("/me/tokens/<int:token_id>")
@tag_
@require_role()
@no_content
async def revoke_token(token_id: int) -> tuple[str, int]:
    """Revoke one of your tokens; it stops working at once, on every worker."""
    await personal_tokens.revoke_mine(db_session(), runtime(), actor(), token_id)
    return "", 204


@bp.get("/users/<int:user_id>/tokens")
@tag_
@require_role(Role.ADMIN)
@validate_response(list[TokenOut])
async def user_tokens(user_id: int) -> ListResponse:
    """A user's personal access tokens (admins)."""
    return whole_list(await personal_tokens.list_for_user(db_session(), runtime(), actor(),
                                                          user_id))


@bp.delete("/users/<int:user_id>/tokens/<int:token_id>")
@tag_
@require_role(Role.ADMIN)
@no_content
async def revoke_user_token(user_id: int, token_id: int) -> tuple[str, int]:
    """Revoke a user's token (admins)."""
    await personal_tokens.revoke_for_user(db_session(), runtime(), actor(), user_id, token_id)
    return "", 204


@bp.get("/me/sessions")
@tag_
@require_role()
@validate_response(list[SessionOut])
async def my_sessions() -> ListResponse:
    """Your live login sessions, one per device; `current` is this one."""
    return whole_list(await device_sessions.list_sessions(db_session(), actor()))


@bp.delete("/me/sessions/<sid:session_id>")
@tag_
@require_role()
@no_content
async def end_session(session_id: str) -> tuple[str, int]:
    """End one of your sessions (its refresh token and access tokens); login only."""
    await device_sessions.end_session(db_session(), runtime(), actor(), session_id)
    return "", 204
