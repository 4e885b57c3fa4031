"""Personal access tokens (`tka_…`) for scripts: create, list, revoke; their last use.

A token works like a login's access token, with its user's current role; its revocation
state lives in the session key of pat{id} (services/authstate.py), so a revocation, or a
change to the user, applies on the next request on every worker."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta

from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.core import tokens
from taskapi.core.errors import conflict, not_found
from taskapi.core.redis_client import GuardedRedis, usable
from taskapi.core.state import AppState
from taskapi.models import PersonalToken, Role, User, utcnow
from taskapi.schemas.self_service import Scope, TokenCreate, TokenCreated, TokenOut
from taskapi.services.authstate import Actor, publish, session_key
from taskapi.services.authz import require, require_session

MAX_TOKENS = 50  # live tokens per user
_USED_TTL = 400 * 86400
_NOTE_EVERY = 60.0  # seconds: last use is kept to within a minute
_noted: dict[int, float] = {}  # token id -> when this process last wrote its use


def _used_key(token_id: int) -> str:
    return f"pat:used:{token_id}"


def _scopes(scope: str) -> list[Scope]:
    return ["read", "write"] if scope == "write" else ["read"]


async def note_use(redis: GuardedRedis, actor: Actor) -> None:
    """Remember the token's last use in Redis, at most once a minute per process."""
    token_id = actor.token_id
    if token_id is None:
        return
    now = time.time()
    if now - _noted.get(token_id, 0.0) < _NOTE_EVERY:
        return
    if len(_noted) > 10_000:
        _noted.clear()
    _noted[token_id] = now
    if not await usable(redis):
        return
    try:
        await redis.set(_used_key(token_id), int(now), ex=_USED_TTL)
    except (RedisError, OSError) as error:
        redis.guard.failed(error)


async def _last_used(redis: GuardedRedis, ids: list[int]) -> dict[int, datetime]:
    if not ids or not await usable(redis):
        return {}
    try:
        values = await redis.mget([_used_key(i) for i in ids])
    except (RedisError, OSError) as error:
        redis.guard.failed(error)
        return {}
    return {i: datetime.fromtimestamp(int(v), UTC) for i, v in zip(ids, values, strict=True)
            if v is not None}


async def create(session: AsyncSession, ctx: AppState, actor: Actor,
                 data: TokenCreate) -> TokenCreated:
    """A new token for the caller; only a login session may make one."""
    require_session(actor)
    live = await session.scalar(select(func.count(PersonalToken.id)).where(
        PersonalToken.user_id == actor.id, PersonalToken.revoked_at.is_(None)))
    if (live or 0) >= MAX_TOKENS:
        raise conflict("too_many_tokens", f"At most {MAX_TOKENS} tokens; revoke one first.")
    now = utcnow().replace(microsecond=0)
    expires_at = now + timedelta(days=data.expires_in_days) if data.expires_in_days else None
    # The hash is known only once the id is: a unique placeholder until the flush.
    row = PersonalToken(user_id=actor.id, name=data.name, scope=data.scope, created_at=now,
                        expires_at=expires_at, token_hash=secrets.token_hex(32))
    session.add(row)
    await session.flush()
    token = tokens.encode_pat(ctx.signing_key, token_id=row.id, user_id=actor.id,
                              scope=data.scope,
                              expires=int(expires_at.timestamp()) if expires_at else None)
    row.token_hash = tokens.token_digest(token)
    await session.commit()
    return TokenCreated(id=row.id, name=row.name, scopes=_scopes(row.scope), token=token,
                        created_at=row.created_at, expires_at=row.expires_at)


async def _list(session: AsyncSession, ctx: AppState, user_id: int) -> list[TokenOut]:
    rows = list(await session.scalars(
        select(PersonalToken).where(PersonalToken.user_id == user_id,
                                    PersonalToken.revoked_at.is_(None))
        .order_by(PersonalToken.id)))
    used = await _last_used(ctx.redis, [row.id for row in rows])
    return [TokenOut(id=row.id, name=row.name, scopes=_scopes(row.scope),
                     created_at=row.created_at, expires_at=row.expires_at,
                     last_used_at=used.get(row.id)) for row in rows]


async def _revoke(session: AsyncSession, ctx: AppState, user_id: int, token_id: int) -> None:
    row = await session.get(PersonalToken, token_id)
    if row is None or row.user_id != user_id or row.revoked_at is not None:
        raise not_found("token")
    row.revoked_at = utcnow()
    await session.commit()
    await publish(ctx.redis, {session_key(tokens.pat_sid(token_id)): "revoked"})


async def list_mine(session: AsyncSession, ctx: AppState, actor: Actor) -> list[TokenOut]:
    return await _list(session, ctx, actor.id)


async def revoke_mine(session: AsyncSession, ctx: AppState, actor: Actor, token_id: int) -> None:
    """Revoke one of the caller's tokens (another user's is a 404)."""
    await _revoke(session, ctx, actor.id, token_id)


async def _user(session: AsyncSession, actor: Actor, user_id: int) -> None:
    require(actor, Role.ADMIN)
    if await session.get(User, user_id) is None:
        raise not_found("user")


async def list_for_user(session: AsyncSession, ctx: AppState, actor: Actor,
                        user_id: int) -> list[TokenOut]:
    await _user(session, actor, user_id)
    return await _list(session, ctx, user_id)


async def revoke_for_user(session: AsyncSession, ctx: AppState, actor: Actor, user_id: int,
                          token_id: int) -> None:
    await _user(session, actor, user_id)
    await _revoke(session, ctx, user_id, token_id)


