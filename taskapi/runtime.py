"""What one app instance holds (settings, database, Redis) and the per-request session."""

from __future__ import annotations

from dataclasses import dataclass, field

from quart import current_app, g, request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from settings import Settings

from .db import Database
from .embedded_redis import EmbeddedRedis

EXTENSION_KEY = "taskapi"
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class Runtime:
    settings: Settings
    db: Database
    redis: Redis = field(init=False)
    redis_url: str = field(init=False, default="")
    embedded: EmbeddedRedis | None = field(init=False, default=None)


def runtime() -> Runtime:
    state: Runtime = current_app.extensions[EXTENSION_KEY]
    return state


def db_session() -> AsyncSession:
    """The request's session, opened on first use and closed at teardown.

    Requests that may write (POST/PUT/PATCH/DELETE) get a session whose transactions begin
    IMMEDIATE on SQLite; reads stay deferred so they never queue behind writers.
    """
    session: AsyncSession | None = g.get("db_session")
    if session is None:
        session = runtime().db.session(write=request.method not in _READ_METHODS)
        g.db_session = session
    return session


async def close_db_session() -> None:
    session: AsyncSession | None = g.pop("db_session", None)
    if session is not None:
        await session.close()
