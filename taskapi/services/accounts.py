"""Registration, login, token rotation, logout and the caller's own account."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.core import ratelimit, tokens
from taskapi.core.cache import bump, users_version
from taskapi.core.errors import APIError, conflict, unauthorized
from taskapi.core.passwords import hash_password, verify_password
from taskapi.core.state import AppState
from taskapi.models import AuthSession, PasswordReset, Role, User, utcnow
from taskapi.schemas.auth import LoginIn, RefreshIn, TokenPair
from taskapi.schemas.users import MeUpdate, PasswordChange, Registration, UserCreate, UserOut
from taskapi.services import confirmations, idempotency, notifications
from taskapi.services.authstate import Actor, publish, revoked_sessions, user_key, user_value
from taskapi.services.authz import require_session

_INVALID_LOGIN = ("invalid_credentials", "Email or password is wrong.")
# A failed login counts towards its email's backoff for this long after the last one.
_FAILURES_TTL = 15 * 60
_dummy_hash: str | None = None
_dummy_lock = asyncio.Lock()


async def _reference_hash() -> str:
    """A real argon2 hash to verify against when the email is unknown, so the answer takes
    as long as for a known account and timing does not reveal who has one."""
    global _dummy_hash
    async with _dummy_lock:
        if _dummy_hash is None:
            _dummy_hash = await hash_password("reference password, never valid")
    return _dummy_hash


async def register(session: AsyncSession, ctx: AppState, data: UserCreate) -> Registration:
    """One answer whether or not the email has an account, so /register confirms no address
    /login hides. A new email becomes a pending account with a welcome email (its
    confirmation link); an email with an account changes nothing and its owner is told.
    A taken username is a 409 whatever the email (usernames are not secret)."""
    # Hashed in every case, before the write lock is taken: each answer takes as long.
    password_hash = await hash_password(data.password)
    answer = Registration(username=data.username, email=data.email)
    for attempt in range(3):
        try:
            email_key, created = await _record_registration(session, ctx, data, password_hash)
            await idempotency.settle(session, answer)
            await session.commit()  # the user, their token and the email, together
            break
        except IntegrityError:  # a concurrent registration won the race: decide again
            await session.rollback()
            if attempt == 2:
                raise
    if created:
        await bump(ctx.redis, users_version())
    await notifications.dispatch(ctx.redis, email_key)
    return answer


async def _record_registration(session: AsyncSession, ctx: AppState, data: UserCreate,
                               password_hash: str) -> tuple[str, bool]:
    """In the caller's transaction: (the email's dedupe key, whether a user was created)."""
    if await session.scalar(select(User.id).where(User.username == data.username)) is not None:
        raise conflict("username_taken", "That username is taken.")
    owner = await session.scalar(select(User).where(User.email == data.email))
    if owner is not None:
        return await notifications.registration_attempt(session, ctx.settings, owner), False
    user = User(username=data.username, email=data.email, password_hash=password_hash,
                role=Role(data.role), is_approved=False)
    session.add(user)
    await session.flush()
    token = confirmations.issue(session, ctx.settings, user.id)
    return await notifications.welcome(session, ctx.settings, user, token), True


def _pair(ctx: AppState, user_id: int, sid: str, refresh_jti: str) -> TokenPair:
    settings = ctx.settings
    return TokenPair(
        access_token=tokens.encode(ctx.signing_key, user_id=user_id, sid=sid,
                                   jti=tokens.new_id(), type="access",
                                   ttl=settings.access_token_expires),
        refresh_token=tokens.encode(ctx.signing_key, user_id=user_id, sid=sid, jti=refresh_jti,
                                    type="refresh", ttl=settings.refresh_token_expires),
        expires_in=settings.access_token_expires,
    )


def backoff_delay(failures: int, after: int, cap: float) -> float:
    """Seconds a login attempt waits before its password check, after `failures` failed
    attempts for the same email: none up to `after`, then 0.25 s doubling, at most `cap`."""
    if failures < after:
        return 0.0
    return min(cap, 0.25 * 2.0 ** min(failures - after, 16))


async def login(session: AsyncSession, ctx: AppState, data: LoginIn, client_ip: str,
                user_agent: str | None = None) -> TokenPair:
    email = data.email.strip().lower()
    settings = ctx.settings
    # Hard limits per client address (+ email); the count of recent failures for the email.
    failures_key = f"lf:{email}"
    failures = await ratelimit.take(ctx.redis, [
        ratelimit.limit("login-ip", client_ip, *settings.login_ip_rate()),
        ratelimit.limit("login", f"{client_ip}|{email}", *settings.login_rate()),
    ], failures_key)
    # Per account, guessing is slowed down, never refused: whoever knows the password still
    # gets in while others guess it. Unknown emails count too (timing must not tell).
    await asyncio.sleep(backoff_delay(failures, settings.login_backoff_after,
                                      settings.login_backoff_max))

    # A read session: the write lock (SQLite) is taken only for the short insert below.
    async with ctx.db.session(write=False) as reader:
        user = await reader.scalar(select(User).where(User.email == email))
    if user is None:
        await verify_password(data.password, await _reference_hash())
        await ratelimit.bump(ctx.redis, failures_key, _FAILURES_TTL)
        raise unauthorized(*_INVALID_LOGIN)
    valid, new_hash = await verify_password(data.password, user.password_hash)
    if not valid:
        await ratelimit.bump(ctx.redis, failures_key, _FAILURES_TTL)
        raise unauthorized(*_INVALID_LOGIN)
    if failures:
        await ratelimit.forget(ctx.redis, failures_key)
    # Only after the password is right: a guesser learns nothing about pending accounts.
    if not user.is_approved:
        raise APIError(403, "account_pending", "The account is awaiting admin approval.")

    sid, refresh_jti = tokens.new_id(), tokens.new_id()
    now = utcnow()
    session.add(AuthSession(id=sid, user_id=user.id, refresh_jti=refresh_jti, created_at=now,
                            last_used_at=now, user_agent=user_agent[:256] if user_agent else None,
                            ip=client_ip[:64],
                            expires_at=now + timedelta(seconds=ctx.settings.refresh_token_expires)))
    if new_hash is not None:  # parameters changed since this hash was made: upgrade it
        await session.execute(update(User).where(User.id == user.id)
                              .values(password_hash=new_hash, version=User.version + 1))
    await session.commit()
    return _pair(ctx, user.id, sid, refresh_jti)


async def refresh(session: AsyncSession, ctx: AppState, data: RefreshIn) -> TokenPair:
    claims = tokens.decode(ctx.signing_key, data.refresh_token, "refresh")
    query = select(AuthSession).where(AuthSession.id == claims.sid)
    if ctx.db.engine.dialect.name != "sqlite":  # SQLite's write txn is already exclusive
        query = query.with_for_update()
    auth_session = await session.scalar(query)
    now = utcnow()
    if (auth_session is None or auth_session.user_id != claims.user_id
            or auth_session.revoked_at is not None or auth_session.expires_at <= now):
        raise unauthorized("token_revoked", "This session has ended; log in again.")
    if auth_session.refresh_jti != claims.jti:
        # A rotated-out token came back: someone holds a copy. End the whole family.
        auth_session.revoked_at, auth_session.revoked_reason = now, "refresh_reuse"
        await session.commit()
        await publish(ctx.redis, revoked_sessions([claims.sid]))
        raise unauthorized("token_reused", "This refresh token was already used; the session "
                                           "has been revoked. Log in again.")
    user = await session.get(User, claims.user_id)
    if user is None or not user.is_approved:
        raise unauthorized("account_inactive", "The account is not active.")
    auth_session.refresh_jti = tokens.new_id()
    auth_session.last_used_at = now
    auth_session.expires_at = now + timedelta(seconds=ctx.settings.refresh_token_expires)
    await session.commit()
    return _pair(ctx, user.id, claims.sid, auth_session.refresh_jti)


async def _revoke(session: AsyncSession, sids: list[str], reason: str) -> None:
    if sids:
        await session.execute(
            update(AuthSession).where(AuthSession.id.in_(sids), AuthSession.revoked_at.is_(None))
            .values(revoked_at=utcnow(), revoked_reason=reason)
        )


async def logout(session: AsyncSession, ctx: AppState, actor: Actor) -> None:
    """Revoke this session: its refresh family and every access token issued from it."""
    require_session(actor)
    await _revoke(session, [actor.sid], "logout")
    await session.commit()
    await publish(ctx.redis, revoked_sessions([actor.sid]))


async def get_me(session: AsyncSession, actor: Actor) -> UserOut:
    user = await session.get(User, actor.id)
    if user is None:
        raise unauthorized("invalid_token", "The account no longer exists.")
    return UserOut.model_validate(user)


async def update_me(session: AsyncSession, actor: Actor, data: MeUpdate) -> UserOut:
    """Timezone and (admins and managers) report schedule; an employee's schedule is 422."""
    # Locked (PostgreSQL): an admin changing this user at once waits, rather than making
    # this versioned UPDATE match no row.
    user = await session.get(User, actor.id, with_for_update=True)
    if user is None:
        raise unauthorized("invalid_token", "The account no longer exists.")
    if "report_schedule" in data.model_fields_set and user.role == Role.EMPLOYEE:
        raise APIError(422, "no_report_schedule",
                       "Only admins and managers receive scheduled reports.")
    for field, value in data.model_dump(exclude_unset=True).items():
        setattr(user, field, value)
    await session.commit()
    return UserOut.model_validate(user)


async def change_password(
    session: AsyncSession, ctx: AppState, actor: Actor, data: PasswordChange
) -> None:
    """New password; every other session of the user is revoked, this one stays."""
    require_session(actor)
    async with ctx.db.session(write=False) as reader:
        current_hash = await reader.scalar(select(User.password_hash).where(User.id == actor.id))
    if current_hash is None:
        raise unauthorized("invalid_token", "The account no longer exists.")
    valid, _ = await verify_password(data.current_password, current_hash)
    if not valid:
        raise APIError(422, "wrong_password", "The current password is wrong.")
    new_hash = await hash_password(data.new_password)
    await session.execute(update(User).where(User.id == actor.id)
                          .values(password_hash=new_hash, version=User.version + 1))
    others = list(await session.scalars(
        select(AuthSession.id).where(AuthSession.user_id == actor.id,
                                     AuthSession.revoked_at.is_(None),
                                     AuthSession.id != actor.sid)
    ))
    await _revoke(session, others, "password_changed")
    await void_resets(session, actor.id)
    await session.commit()
    await publish(ctx.redis, revoked_sessions(others))


async def void_resets(session: AsyncSession, user_id: int) -> None:
    """Spend every unused password reset token of the user (a newer one, or a new password,
    makes the older links worthless)."""
    await session.execute(
        update(PasswordReset).where(PasswordReset.user_id == user_id,
                                    PasswordReset.used_at.is_(None))
        .values(used_at=utcnow()).execution_options(synchronize_session=False))


async def revoke_all_sessions(session: AsyncSession, user_id: int, reason: str) -> list[str]:
    """Revoke every live session of a user (caller commits, then publishes)."""
    sids = list(await session.scalars(
        select(AuthSession.id).where(AuthSession.user_id == user_id,
                                     AuthSession.revoked_at.is_(None))
    ))
    await _revoke(session, sids, reason)
    return sids


def state_change(user_id: int, user: User | None, sids: Sequence[str] = ()) -> dict[str, str]:
    """The auth cache entries to overwrite after a change to this user."""
    return {user_key(user_id): user_value(user), **revoked_sessions(sids)}
