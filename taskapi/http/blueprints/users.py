"""User administration: approval workflow, listing, role changes, deletion."""

from __future__ import annotations

from quart import Blueprint
from quart_schema import document_querystring, tag, validate_request, validate_response

from taskapi.http.current import db_session, runtime
from taskapi.http.deps import actor, require_role
from taskapi.http.openapi import conditional, no_content, problems
from taskapi.http.responses import ListResponse, dump_list, page_headers, parse_query
from taskapi.http.safe_writes import if_match
from taskapi.models import Role
from taskapi.schemas.users import UserAdminUpdate, UserListQuery, UserOut
from taskapi.services import users

bp = Blueprint("users", __name__)
tag_ = tag(["users"])
ADMIN, MANAGER = Role.ADMIN, Role.MANAGER


@bp.get("/users")
@tag_
@require_role(ADMIN, MANAGER)
@document_querystring(UserListQuery)
@validate_response(list[UserOut])
async def list_users() -> ListResponse:
    """List users by id (filters: role, is_approved); `Link` rel=next and `X-Total-Count`."""
    page = await users.list_users(db_session(), actor(), parse_query(UserListQuery))
    return dump_list(page.items), 200, page_headers(page)  # type: ignore[arg-type]


@bp.get("/users/pending")
@tag_
@require_role(ADMIN)
@document_querystring(UserListQuery)
@validate_response(list[UserOut])
async def pending_users() -> ListResponse:
    """Users awaiting approval."""
    page = await users.list_users(db_session(), actor(), parse_query(UserListQuery),
                                  pending_only=True)
    return dump_list(page.items), 200, page_headers(page)  # type: ignore[arg-type]


@bp.put("/users/<int:user_id>/approve")
@tag_
@require_role(ADMIN)
@validate_response(UserOut)
@problems(409)
async def approve(user_id: int) -> UserOut:
    """Approve a pending user; they get an email and can log in."""
    return await users.approve_user(db_session(), runtime(), actor(), user_id)


@bp.delete("/users/<int:user_id>/reject")
@tag_
@require_role(ADMIN)
@no_content
@problems(409)
async def reject(user_id: int) -> tuple[str, int]:
    """Remove a user who is still awaiting approval."""
    await users.reject_user(db_session(), runtime(), actor(), user_id)
    return "", 204


@bp.get("/users/<int:user_id>")
@tag_
@require_role(ADMIN)
@validate_response(UserOut)
async def get_user(user_id: int) -> tuple[UserOut, int, dict[str, str]]:
    """One user; its ETag is what If-Match on PUT /users/{id} compares."""
    user, etag = await users.get_user(db_session(), actor(), user_id)
    return user, 200, {"ETag": etag}


@bp.put("/users/<int:user_id>")
@tag_
@require_role(ADMIN)
@validate_request(UserAdminUpdate)
@validate_response(UserOut)
@problems(409)
@conditional
async def update_user(user_id: int, data: UserAdminUpdate) -> tuple[UserOut, int, dict[str, str]]:
    """Change a user's role or approval; applies to their live tokens at once."""
    user, etag = await users.update_user(db_session(), runtime(), actor(), user_id, data,
                                         if_match())
    return user, 200, {"ETag": etag}


@bp.delete("/users/<int:user_id>")
@tag_
@require_role(ADMIN)
@no_content
@problems(409)
async def delete_user(user_id: int) -> tuple[str, int]:
    """Delete a user; their sessions end and their tasks become unassigned."""
    await users.delete_user(db_session(), runtime(), actor(), user_id)
    return "", 204
