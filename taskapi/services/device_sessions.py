"""The caller's login sessions (one per device that logged in): list them, end one."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.core.errors import not_found
from taskapi.core.state import AppState
from taskapi.models import AuthSession, utcnow
from taskapi.schemas.self_service import SessionOut
from taskapi.services.authstate import Actor, publish, revoked_sessions
from taskapi.services.authz import require_session


async def list_sessions(session: AsyncSession, actor: Actor) -> list[SessionOut]:
    """Live sessions, newest first; `current` marks the caller's own."""
    rows = await session.scalars(
        select(AuthSession).where(AuthSession.user_id == actor.id,
                                  AuthSession.revoked_at.is_(None),
                                  AuthSession.expires_at > utcnow())
        .order_by(AuthSession.created_at.desc(), AuthSession.id))
    return [SessionOut(id=row.id, created_at=row.created_at, last_used_at=row.last_used_at,
                       user_agent=row.user_agent, ip=row.ip, current=row.id == actor.sid)
            for row in rows]


async def end_session(session: AsyncSession, ctx: AppState, actor: Actor, sid: str) -> None:
    """End one of the caller's sessions: its refresh family and access tokens, on every
    worker at once. Another user's session, or one already ended, is a 404."""
    require_session(actor)
    row = await session.get(AuthSession, sid)
    if row is None or row.user_id != actor.id or row.revoked_at is not None:
        raise not_found("session")
    row.revoked_at, row.revoked_reason = utcnow(), "ended_by_user"
    await session.commit()
    await publish(ctx.redis, revoked_sessions([sid]))
