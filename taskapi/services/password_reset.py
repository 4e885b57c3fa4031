"""Password reset: POST /password/forgot queues the same job whatever the address (so the
answer takes the same time and says nothing), the job issues a single-use token (stored
hashed) and records the email; POST /password/reset redeems it and ends every session."""

from __future__ import annotations

import secrets
from datetime import timedelta

from arq.connections import ArqRedis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.config import Settings
from taskapi.core import ratelimit
from taskapi.core.db import Database
from taskapi.core.errors import APIError
from taskapi.core.passwords import hash_password
from taskapi.core.state import AppState
from taskapi.models import PasswordReset, User, utcnow
from taskapi.schemas.self_service import ForgotIn, ResetIn
from taskapi.services import notifications
from taskapi.services.accounts import revoke_all_sessions, void_resets
from taskapi.services.authstate import publish, revoked_sessions
from taskapi.services.confirmations import TOKEN_BYTES, digest, redeem
from taskapi.services.enqueue import Unlogged, enqueue

JOB = "start_password_reset"


async def forgot(ctx: AppState, data: ForgotIn, client_ip: str) -> None:
    """Rate limited like login (per client address, and per address + email); then one job
    queued, for every address alike: no lookup here, so neither the answer nor its timing
    depends on whether the address has an account, a pending one or an approved one."""
    email = data.email.strip().lower()
    settings = ctx.settings
    await ratelimit.take(ctx.redis, [
        ratelimit.limit("forgot-ip", client_ip, *settings.login_ip_rate()),
        ratelimit.limit("forgot", f"{client_ip}|{email}", *settings.login_rate()),
    ])
    if not await enqueue(ctx.redis, JOB, Unlogged(email)):
        # Redis cannot take the job: do it here (the email waits in the outbox for the
        # sweeper). Only during an outage does the answer take longer for some addresses.
        await start(ctx.db, settings, ctx.redis, email)


async def start(db: Database, settings: Settings, redis: ArqRedis, email: str) -> bool:
    """The job: for an approved account, void its older tokens, issue a new one and record
    the email (one transaction), then hand the email to the worker. False: nothing to do."""
    async with db.transaction(write=True) as session:
        user = await session.scalar(select(User).where(User.email == email))
        if user is None or not user.is_approved:
            return False
        await void_resets(session, user.id)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = utcnow()
        row = PasswordReset(user_id=user.id, token_hash=digest(token), created_at=now,
                            expires_at=now + timedelta(seconds=settings.password_reset_expires))
        session.add(row)
        await session.flush()
        key = await notifications.password_reset(session, settings, user, row.id, token)
    await notifications.dispatch(redis, key)
    return True


async def reset(session: AsyncSession, ctx: AppState, data: ResetIn) -> None:
    """Set the password with a live token; every session of the user ends, on every worker.
    Unknown, used, expired and voided tokens get one and the same answer."""
    new_hash = await hash_password(data.new_password)  # before the write lock is taken
    user_id = await redeem(session, PasswordReset, data.token)
    if user_id is None:
        await session.rollback()
        raise APIError(400, "invalid_token",
                       "The reset link is invalid, used, expired or replaced by a newer one.")
    await session.execute(update(User).where(User.id == user_id)
                          .values(password_hash=new_hash)
                          .execution_options(synchronize_session=False))
    await void_resets(session, user_id)
    sids = await revoke_all_sessions(session, user_id, "password_reset")
    await session.commit()
    await publish(ctx.redis, revoked_sessions(sids))
