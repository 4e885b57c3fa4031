"""Quart-side access to the app's AppState and the per-request database session."""

from __future__ import annotations

import asyncio

from quart import current_app, g, request
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.core.state import AppState

EXTENSION_KEY = "taskapi"
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def runtime() -> AppState:
    state: AppState = current_app.extensions[EXTENSION_KEY]
    return state


def db_session(*, write: bool | None = None) -> AsyncSession:
    """The request's session, opened on first use and closed at teardown.

    Requests that may write (POST/PUT/PATCH/DELETE) get a session whose transactions begin
    IMMEDIATE on SQLite, unless `write=False`; reads stay deferred so they never queue
    behind writers. (The hot task routes skip this session: see Database.run.)
    """
    session: AsyncSession | None = g.get("db_session")
    if session is None:
        if write is None:
            write = request.method not in _READ_METHODS
        session = runtime().db.session(write=write)
        g.db_session = session
    return session


async def close_db_session() -> None:
    session: AsyncSession | None = g.pop("db_session", None)
    if session is not None:
        # Shielded: when the client disconnects mid-request the teardown is cancelled, and
        # a cancelled close would abandon the connection half reset (logged as an error).
        await asyncio.shield(session.close())
