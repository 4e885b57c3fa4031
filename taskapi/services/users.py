"""User use cases."""

from __future__ import annotations

from pydantic import TypeAdapter
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.core.cache import bump, mine_version, task_version, tasks_version, users_version
from taskapi.core.db import Database
from taskapi.core.errors import conflict, not_found
from taskapi.core.event_channel import announce
from taskapi.core.pagination import Page, decode_cursor, encode_cursor
from taskapi.core.passwords import hash_password
from taskapi.core.state import AppState
from taskapi.models import Role, User
from taskapi.schemas.common import Id, normalize_email
from taskapi.schemas.users import UserAdminUpdate, UserListQuery, UserOut
from taskapi.services import notifications
from taskapi.services.accounts import revoke_all_sessions, state_change
from taskapi.services.authstate import Actor, publish
from taskapi.services.authz import STAFF, require
from taskapi.services.preconditions import IfMatch, check, conditional_commit, etag, lock_row
from taskapi.services.tasks.unlink import unlink_tasks

MIN_PASSWORD_LENGTH = 8
_CURSOR = TypeAdapter(tuple[Id])  # the last user's id, as list_users hands it out


async def ensure_admin(
    db: Database, *, email: str, username: str, password: str
) -> tuple[int, bool]:
    """An approved admin with this email: created, or the existing user promoted.

    Returns (user id, created). Idempotent: a second call with the same email changes nothing
    but the role/approval of that user (the password is left as it is).
    """
    email = normalize_email(email)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    if not 3 <= len(username) <= 40:
        raise ValueError("username must be 3 to 40 characters")
    password_hash = await hash_password(password)
    async with db.transaction(write=True) as session:
        user = await session.scalar(select(User).where(User.email == email))
        if user is not None:
            user.role, user.is_approved = Role.ADMIN, True
            return user.id, False
        if await session.scalar(select(User.id).where(User.username == username)):
            raise ValueError(f"username {username!r} is taken by another account")
        user = User(email=email, username=username, password_hash=password_hash,
                    role=Role.ADMIN, is_approved=True)
        session.add(user)
        await session.flush()
        return user.id, True


async def list_users(session: AsyncSession, actor: Actor, query: UserListQuery,
                     *, pending_only: bool = False) -> Page[UserOut]:
    """Users by id, keyset-paginated; admins and managers (pending list: admins)."""
    if pending_only:
        require(actor, Role.ADMIN)
    else:
        require(actor, *STAFF)
    conditions: list[ColumnElement[bool]] = []
    if pending_only:
        conditions.append(User.is_approved.is_(False))
    if query.role is not None:
        conditions.append(User.role == query.role)
    if query.is_approved is not None and not pending_only:
        conditions.append(User.is_approved.is_(query.is_approved))
    total = await session.scalar(select(func.count(User.id)).where(*conditions)) or 0
    if query.cursor:
        (after_id,) = decode_cursor(query.cursor, _CURSOR)
        conditions.append(User.id > after_id)
    rows = list(await session.scalars(
        select(User).where(*conditions).order_by(User.id).limit(query.limit + 1)
    ))
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    next_cursor = encode_cursor([rows[-1].id]) if more else None
    return Page([UserOut.model_validate(u) for u in rows], next_cursor, total)


async def _get(session: AsyncSession, user_id: int, *, lock: bool = False) -> User:
    query = select(User).where(User.id == user_id).execution_options(populate_existing=True)
    user = await session.scalar(query.with_for_update() if lock else query)
    if user is None:
        raise not_found("user")
    return user


async def get_user(session: AsyncSession, actor: Actor, user_id: int) -> tuple[UserOut, str]:
    """The user and their ETag (their version: what If-Match on PUT compares)."""
    require(actor, Role.ADMIN)
    user = await _get(session, user_id)
    return UserOut.model_validate(user), etag(user.version)


async def approve_user(session: AsyncSession, ctx: AppState, actor: Actor,
                       user_id: int) -> UserOut:
    """Approve a pending user (idempotent) and queue the approval email."""
    user, _ = await update_user(session, ctx, actor, user_id, UserAdminUpdate(is_approved=True))
    return user


async def reject_user(session: AsyncSession, ctx: AppState, actor: Actor, user_id: int) -> None:
    """Remove a user who is still pending; approved users are deleted with DELETE /users/{id}."""
    require(actor, Role.ADMIN)
    user = await _get(session, user_id)
    if user.is_approved:
        raise conflict("not_pending", "Only a pending user can be rejected.")
    email_key = await notifications.rejected(session, ctx.settings, user)
    await session.delete(user)
    await session.commit()
    await publish(ctx.redis, state_change(user_id, None))
    await bump(ctx.redis, users_version())
    await notifications.dispatch(ctx.redis, email_key)


async def update_user(session: AsyncSession, ctx: AppState, actor: Actor, user_id: int,
                      data: UserAdminUpdate,
                      if_match: IfMatch | None = None) -> tuple[UserOut, str]:
    """Change role and/or approval; live tokens see the change on their next request.
    Also returns the new ETag."""
    require(actor, Role.ADMIN)
    user = await _get(session, user_id, lock=lock_row(if_match))
    check(if_match, user.version)
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    if user.id == actor.id and (
        changes.get("role", Role.ADMIN) != Role.ADMIN or changes.get("is_approved") is False
    ):
        # So the last admin always remains.
        raise conflict("cannot_modify_self", "Admins cannot demote or unapprove themselves.")
    newly_approved = changes.get("is_approved") is True and not user.is_approved
    if newly_approved and ctx.settings.require_email_confirmation and not user.email_confirmed:
        raise conflict("email_unconfirmed",
                       "The user has not confirmed their email address yet.")
    for field, value in changes.items():
        setattr(user, field, value)
    email_key = None
    async with conditional_commit(session):  # UPDATE … WHERE version = the one read
        if newly_approved:
            email_key = await notifications.approved(session, ctx.settings, user)
    await publish(ctx.redis, state_change(user.id, user))
    await bump(ctx.redis, users_version())
    if email_key:
        await notifications.dispatch(ctx.redis, email_key)
    return UserOut.model_validate(user), etag(user.version)


async def delete_user(session: AsyncSession, ctx: AppState, actor: Actor, user_id: int) -> None:
    """Delete a user; their sessions go with them and their tasks become unassigned."""
    require(actor, Role.ADMIN)
    if user_id == actor.id:
        raise conflict("cannot_modify_self", "Admins cannot delete themselves.")
    user = await _get(session, user_id)
    # Deleting a registration still pending is rejecting it: its owner is told.
    email_key = None if user.is_approved else await notifications.rejected(
        session, ctx.settings, user)
    sids = await revoke_all_sessions(session, user.id, "user_deleted")
    their_tasks = await unlink_tasks(session, actor, user_id)
    await session.delete(user)
    await session.commit()
    await publish(ctx.redis, state_change(user_id, None, sids))
    # Their tasks were unassigned by the foreign key: those tasks, lists and stats change too.
    versions = (users_version(), tasks_version(), mine_version(user_id),
                *(task_version(task_id) for task_id in their_tasks))
    if their_tasks:  # their unassignments also reach the live streams
        await announce(ctx.redis, *versions)
    else:
        await bump(ctx.redis, *versions)
    if email_key:
        await notifications.dispatch(ctx.redis, email_key)
