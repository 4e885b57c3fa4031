"""Email confirmation: a single-use token issued at registration, redeemed by POST
/email/confirm. Only its SHA-256 is stored; the token itself travels in the welcome email."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.config import Settings
from taskapi.core.cache import bump, users_version
from taskapi.core.errors import APIError
from taskapi.core.state import AppState
from taskapi.models import EmailConfirmation, User, utcnow
from taskapi.models.email_confirmation import EmailedToken
from taskapi.schemas.users import EmailConfirm

TOKEN_BYTES = 32


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(session: AsyncSession, settings: Settings, user_id: int) -> str:
    """Add a new token for the user to the caller's transaction; returns the token."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    now = utcnow()
    session.add(EmailConfirmation(
        user_id=user_id, token_hash=digest(token), created_at=now,
        expires_at=now + timedelta(seconds=settings.email_confirmation_expires)))
    return token


async def redeem(session: AsyncSession, table: type[EmailedToken], token: str) -> int | None:
    """Mark a live token of `table` used; its user's id, or None when the token is unknown,
    used or expired. One conditional UPDATE: two requests with one token cannot both win."""
    now = utcnow()
    user_id: int | None = await session.scalar(
        update(table)
        .where(table.token_hash == digest(token), table.used_at.is_(None),
               table.expires_at > now)
        .values(used_at=now).returning(table.user_id)
        .execution_options(synchronize_session=False))
    return user_id


async def confirm(session: AsyncSession, ctx: AppState, data: EmailConfirm) -> None:
    """Mark the token used and its user's email confirmed. Unknown, used and expired tokens
    get one and the same answer."""
    user_id = await redeem(session, EmailConfirmation, data.token)
    if user_id is None:
        await session.rollback()
        raise APIError(400, "invalid_token", "The confirmation link is invalid, used or expired.")
    await session.execute(update(User).where(User.id == user_id).values(email_confirmed=True,
                                                                     version=User.version + 1)
                          .execution_options(synchronize_session=False))
    await session.commit()
    await bump(ctx.redis, users_version())
