"""Who is calling: session and user state for the per-request auth check.

The database is the source of truth; Redis caches two small keys per caller:

  auth:s:{sid}@{epoch}  "ok:{user_id}" | "revoked"
  auth:u:{id}@{epoch}   "{role}:{approved 0|1}" | "gone"

Fills use SET NX, changes use plain SET after the database commit (decision 014).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from taskapi.core.db import Database
from taskapi.core.errors import unauthorized
from taskapi.core.redis_client import EPOCH_KEY, GuardedRedis, usable
from taskapi.core.tokens import Claims
from taskapi.models import AuthSession, PersonalToken, Role, User, utcnow

log = logging.getLogger("taskapi.auth")
CACHE_TTL = 120
# Overwrite auth state under the current epoch (a change must reach the keys readers use).
_PUBLISH_LUA = """
local epoch = redis.call('GET', KEYS[1]) or '0'
for i = 2, #KEYS do redis.call('SET', KEYS[i] .. '@' .. epoch, ARGV[i], 'EX', ARGV[1]) end
return epoch
"""


@dataclass(frozen=True, slots=True)
class Actor:
    """The authenticated caller, with its *current* role (not the one at login)."""

    id: int
    role: Role
    sid: str  # the login session, or pat{id} for a personal access token
    scope: Literal["read", "write"] | None = None  # None: a login session (may do anything)

    @property
    def token_id(self) -> int | None:
        """The personal access token's id, or None for a login session."""
        return int(self.sid[3:]) if self.scope is not None else None


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


def token_value(token: PersonalToken | None) -> str:
    """A personal access token's state, in the session key of its pat{id}."""
    if token is None or token.revoked_at is not None or (
            token.expires_at is not None and token.expires_at <= utcnow()):
        return "revoked"
    return f"ok:{token.user_id}"


async def load_state(db: Database, claims: Claims) -> tuple[str, str]:
    """The (user, session) state from the database."""
    async with db.session(write=False) as session:
        user = await session.get(User, claims.user_id)
        if claims.type == "pat":
            token = await session.get(PersonalToken, int(claims.sid[3:]))
            return user_value(user), token_value(token)
        auth_session = await session.get(AuthSession, claims.sid)
        return user_value(user), session_value(auth_session)


def queue_fill(pipe: Pipeline, claims: Claims, epoch: str, user_state: str,
               session_state: str) -> None:
    """Queue the cache fill (SET NX, decision 014) of state read from the database."""
    pipe.set(f"{user_key(claims.user_id)}@{epoch}", user_state, ex=CACHE_TTL, nx=True)
    pipe.set(f"{session_key(claims.sid)}@{epoch}", session_state, ex=CACHE_TTL, nx=True)


async def resolve_actor(
    db: Database,
    redis: GuardedRedis,
    claims: Claims,
    cached_user: bytes | None,
    cached_session: bytes | None,
    epoch: str | None,
) -> Actor:
    """The Actor for verified claims, or 401 when revoked, deleted or not approved.

    `epoch`: the one the cached state was read under (None: Redis was not reached, so the
    state is not cached either)."""
    if cached_user is None or cached_session is None:
        user_state, session_state = await load_state(db, claims)
        if epoch is not None and not redis.guard.down:
            try:
                async with redis.pipeline(transaction=False) as pipe:
                    queue_fill(pipe, claims, epoch, user_state, session_state)
                    await pipe.execute()
            except (RedisError, OSError) as error:
                redis.guard.failed(error)
    else:
        user_state, session_state = cached_user.decode(), cached_session.decode()
    return actor_from_state(claims, user_state, session_state)


def actor_from_state(claims: Claims, user_state: str, session_state: str) -> Actor:
    """The Actor from the two cached values (see the module docstring), or 401. The request
    script of core/ratelimit.py applies the same rule to choose the limit it counts."""
    if session_state != f"ok:{claims.user_id}":
        raise unauthorized("token_revoked", "This session has been revoked; log in again.")
    if user_state == "gone":
        raise unauthorized("invalid_token", "The account no longer exists.")
    role, approved = user_state.split(":")
    if approved != "1":
        raise unauthorized("account_inactive", "The account is not approved.")
    return Actor(id=claims.user_id, role=Role(role), sid=claims.sid, scope=claims.scope)


async def publish(redis: GuardedRedis, values: dict[str, str]) -> None:
    """After a commit: overwrite cached state so the next request, on any worker, sees it.
    With Redis down this is skipped: the epoch moves on when it is back."""
    if not values or not await usable(redis):
        return
    try:
        script = redis.register_script(_PUBLISH_LUA)
        await script(keys=[EPOCH_KEY, *values], args=[CACHE_TTL, *values.values()])
    except (RedisError, OSError) as error:
        # The database already holds the change; the old state is unreachable once the
        # epoch moves on (when this process reaches Redis again).
        log.error("could not publish auth state change to Redis (%d keys): %r", len(values), error)
        redis.guard.failed(error)


def revoked_sessions(sids: Iterable[str]) -> dict[str, str]:
    return {session_key(sid): "revoked" for sid in sids}
