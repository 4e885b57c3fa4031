"""The streams' callers as they are now: one batch read of their auth state (Redis, else
the database), the same rule the per-request check applies (authstate.actor_from_state)."""

from __future__ import annotations

from collections.abc import Iterable

from redis.exceptions import RedisError
from sqlalchemy import select

from taskapi.core.db import Database
from taskapi.core.errors import APIError
from taskapi.core.redis_client import EPOCH_KEY, GuardedRedis, usable
from taskapi.core.tokens import Claims
from taskapi.models import AuthSession, User
from taskapi.services.authstate import (
    Actor,
    actor_from_state,
    session_key,
    session_value,
    user_key,
    user_value,
)

Key = tuple[int, str]  # (user id, session id)


async def _cached(redis: GuardedRedis, keys: list[Key]) -> dict[Key, tuple[str, str]]:
    if not keys or not await usable(redis):
        return {}
    try:
        epoch = (await redis.get(EPOCH_KEY) or b"0").decode()
        names = [name for uid, sid in keys
                 for name in (f"{user_key(uid)}@{epoch}", f"{session_key(sid)}@{epoch}")]
        values = await redis.mget(names)
    except (RedisError, OSError) as error:
        redis.guard.failed(error)
        return {}
    found = {}
    for index, key in enumerate(keys):
        user, session = values[2 * index], values[2 * index + 1]
        if user is not None and session is not None:
            found[key] = (user.decode(), session.decode())
    return found


async def _stored(db: Database, keys: list[Key]) -> dict[Key, tuple[str, str]]:
    if not keys:
        return {}
    async with db.session(write=False) as session:
        users = {u.id: u for u in await session.scalars(
            select(User).where(User.id.in_({uid for uid, _ in keys})))}
        sessions = {s.id: s for s in await session.scalars(
            select(AuthSession).where(AuthSession.id.in_({sid for _, sid in keys})))}
    return {(uid, sid): (user_value(users.get(uid)), session_value(sessions.get(sid)))
            for uid, sid in keys}


async def current_actors(db: Database, redis: GuardedRedis,
                         wanted: Iterable[Key]) -> dict[Key, Actor]:
    """The Actor each (user, session) is now; absent: no longer signed in."""
    keys = list(wanted)
    states = await _cached(redis, keys)
    missing = [key for key in keys if key not in states]
    for start in range(0, len(missing), 500):
        states.update(await _stored(db, missing[start:start + 500]))
    actors = {}
    for (uid, sid), (user_state, session_state) in states.items():
        try:
            actors[uid, sid] = actor_from_state(Claims(uid, sid, "", "access", 0), user_state,
                                                session_state)
        except APIError:
            pass
    return actors
