"""Idempotent creates (the Idempotency-Key header): the answer is stored with the write.

The HTTP layer looks the key up first (`lookup`: a stored answer is replayed, another payload
is a 422) and leaves a `Claim` on the request's session. The create then calls `settle` just
before its commit: the key row, with the answer, is inserted in the same transaction as what
it created, so a committed create always has its row and a retry can never create it again,
whatever happens to Redis (decision 023). Two requests with one key at the same moment: the
second's INSERT waits for the first's transaction (PostgreSQL's unique index) or its turn
(SQLite's single writer), then fails; that request is rolled back and answered with the
first's stored answer, or 409 while the first has not committed.

`settle` comes before the event log's insert (its advisory lock), so a request waiting on a
key never holds that lock.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, event, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.core.db import Database
from taskapi.core.errors import APIError
from taskapi.models import IdempotencyKey, utcnow

KEYS = cast(Table, IdempotencyKey.__table__)
CLAIM = "taskapi.idempotency"  # the session.info key of a request's claim
MAX_KEY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: str


@dataclass(slots=True)
class Claim:
    scope: str
    key: str
    fingerprint: str
    render: Callable[[Any], Answer]  # a create's result → its answer
    ttl: int  # IDEMPOTENCY_TTL: an older row of the same key gives way
    settled: bool = field(default=False)


class KeyTaken(Exception):
    """The key was stored by a concurrent request while this one ran (it was rolled back)."""


def in_flight() -> APIError:
    return APIError(409, "idempotency_key_in_use",
                    "A request with this Idempotency-Key is still in progress: retry later.")


def _reused() -> APIError:
    return APIError(422, "idempotency_key_reused",
                    "This Idempotency-Key was used with a different request.")


async def lookup(db: Database, scope: str, key: str, fingerprint: str,
                 ttl: int) -> Answer | None:
    """The stored answer for (scope, key), None if there is none (or only an expired one);
    422 if it was stored for another request."""
    since = utcnow() - timedelta(seconds=ttl)

    def read(conn: Connection) -> Any:
        return conn.execute(
            select(KEYS.c.fingerprint, KEYS.c.status, KEYS.c.headers, KEYS.c.body)
            .where(KEYS.c.scope == scope, KEYS.c.key == key, KEYS.c.created_at >= since)
        ).one_or_none()

    row = await db.run(read, inline=True)  # by a unique index
    if row is None:
        return None
    if row.fingerprint != fingerprint:
        raise _reused()
    return Answer(row.status, json.loads(row.headers), row.body)


def claim(session: AsyncSession, pending: Claim) -> None:
    session.info[CLAIM] = pending

    @event.listens_for(session.sync_session, "after_rollback")
    def _rolled_back(_session: Any) -> None:
        pending.settled = False  # the stored row went with the rest (a create that retries)


async def settle(session: AsyncSession, result: Any) -> None:
    """In the create's transaction, before its commit: store the key and the answer (a no-op
    when the request sent no key). Raises KeyTaken if a concurrent request stored it."""
    pending: Claim | None = session.info.get(CLAIM)
    if pending is None or pending.settled:
        return
    await _store(session, pending, pending.render(result))


async def _store(session: AsyncSession, pending: Claim, answer: Answer) -> None:
    now = utcnow()
    # An expired row of the same key gives way (the worker prunes the rest).
    await session.execute(delete(KEYS).where(
        KEYS.c.scope == pending.scope, KEYS.c.key == pending.key,
        KEYS.c.created_at < now - timedelta(seconds=pending.ttl)))
    try:
        await session.execute(insert(KEYS).values(
            scope=pending.scope, key=pending.key, fingerprint=pending.fingerprint,
            state="done", status=answer.status, headers=json.dumps(answer.headers),
            body=answer.body, created_at=now))
    except IntegrityError:
        raise KeyTaken from None
    pending.settled = True


async def settle_late(session: AsyncSession, answer: Answer) -> None:
    """For a create that returned without settling (it found its answer without writing):
    store the answer now, and commit."""
    pending: Claim | None = session.info.get(CLAIM)
    if pending is None or pending.settled:
        return
    await _store(session, pending, answer)
    await session.commit()


async def prune(db: Database, ttl: int) -> int:
    """Delete the keys older than IDEMPOTENCY_TTL; how many."""
    cutoff = utcnow() - timedelta(seconds=ttl)

    def work(conn: Connection) -> int:
        return conn.execute(delete(KEYS).where(KEYS.c.created_at < cutoff)).rowcount

    return await db.run(work, write=True)
