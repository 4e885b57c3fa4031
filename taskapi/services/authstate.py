"""Who is calling: session and user state for the per-request auth check.

The database is the source of truth; Redis caches two small keys per caller so the hot path
issues no SQL (one pipelined round trip, shared with the rate limit):

  auth:s:{sid}  "ok:{user_id}" | "revoked"
  auth:u:{id}   "{role}:{approved 0|1}" | "gone"

Fills use SET NX, changes use plain SET after the database commit. A reader that loaded old
state from the database just before a change can therefore never overwrite the newer value
(its NX fails), and a change always overwrites an older fill. Entries expire after
CACHE_TTL, which bounds staleness only in the one case nothing else covers: a change made
while Redis could not be written. With Redis down every check reads the database.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..db import Database
from ..exceptions import unauthorized
from ..models import AuthSession, Role, User
from ..outage import Outage
from ..tokens import Claims

log = logging.getLogger("taskapi.auth")
CACHE_TTL = 120
AUTH_OUTAGE = Outage("auth state read from the database")


@dataclass(frozen=True, slots=True)
class Actor:
    """The authenticated caller, with its *current* role (not the one at login)."""

    id: int
    role: Role
    sid: str


def user_key(user_id: int) -> str:
    return f"auth:u:{user_id}"


def session_key(sid: str) -> str:
    return f"auth:s:{sid}"


def user_value(user: User | None) -> str:
    return "gone" if user is None else f"{user.role.value}:{int(user.is_approved)}"


def session_value(session: AuthSession | None) -> str:
    if session is None or session.revoked_at is not None:
        return "revoked"
    return f"ok:{session.user_id}"


async def _load(db: Database, claims: Claims) -> tuple[str, str]:
    async with db.session(write=False) as session:
        user = await session.get(User, claims.user_id)
        auth_session = await session.get(AuthSession, claims.sid)
        return user_value(user), session_value(auth_session)


async def resolve_actor(
    db: Database,
    redis: Redis,
    claims: Claims,
    cached_user: bytes | None,
    cached_session: bytes | None,
) -> Actor:
    """The Actor for verified claims, or 401 when revoked, deleted or not approved."""
    if cached_user is None or cached_session is None:
        user_state, session_state = await _load(db, claims)
        try:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.set(user_key(claims.user_id), user_state, ex=CACHE_TTL, nx=True)
                pipe.set(session_key(claims.sid), session_state, ex=CACHE_TTL, nx=True)
                await pipe.execute()
            AUTH_OUTAGE.ok()
        except (RedisError, OSError) as error:
            AUTH_OUTAGE.failed(error)
    else:
        user_state, session_state = cached_user.decode(), cached_session.decode()
    return actor_from_state(claims, user_state, session_state)


def actor_from_state(claims: Claims, user_state: str, session_state: str) -> Actor:
    """The Actor from the two cached values (see the module docstring), or 401."""
    if session_state != f"ok:{claims.user_id}":
        raise unauthorized("token_revoked", "This session has been revoked; log in again.")
    if user_state == "gone":
        raise unauthorized("invalid_token", "The account no longer exists.")
    role, approved = user_state.split(":")
    if approved != "1":
        raise unauthorized("account_inactive", "The account is not approved.")
    return Actor(id=claims.user_id, role=Role(role), sid=claims.sid)


async def publish(redis: Redis, values: dict[str, str]) -> None:
    """After a commit: overwrite cached state so the next request, on any worker, sees it."""
    if not values:
        return
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for key, value in values.items():
                pipe.set(key, value, ex=CACHE_TTL)
            await pipe.execute()
    except (RedisError, OSError) as error:
        # The database already holds the change; cached entries expire within CACHE_TTL.
        log.error("could not publish auth state change to Redis (%d keys): %r", len(values), error)


def revoked_sessions(sids: Iterable[str]) -> dict[str, str]:
    return {session_key(sid): "revoked" for sid in sids}
