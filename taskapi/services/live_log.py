"""Reading the event log for the live streams: the rows after an id, and whether a replay
from an id is still possible (services/live.py)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from taskapi.core.db import Database
from taskapi.models import utcnow
from taskapi.services import events
from taskapi.services.live_events import Event


async def read_after(db: Database, after: int, limit: int) -> list[Event]:
    table = events.EVENTS
    query = (select(table.c.id, table.c.type, table.c.task_id, table.c.audience, table.c.data,
                    table.c.created_at)
             .where(table.c.id > after).order_by(table.c.id).limit(limit))
    async with db.session(write=False) as session:
        rows = (await session.execute(query)).all()
    return [Event(r.id, r.type, r.task_id, frozenset(r.audience or ()), r.data, r.created_at)
            for r in rows]


async def needs_reset(db: Database, last_id: int, retention: int) -> bool:
    """Whether the events after `last_id` cannot be replayed: the first of them is older
    than the retention (its payload may be pruned: decision 040), or the id is past the
    log's end (another log's id). The client must refetch rather than replay."""
    table = events.EVENTS
    async with db.session(write=False) as session:
        first = await session.scalar(select(table.c.created_at).where(table.c.id > last_id)
                                     .order_by(table.c.id).limit(1))
        if first is not None:
            return bool(first < utcnow() - timedelta(seconds=retention))
        high = await session.scalar(select(func.max(table.c.id))) or 0
    return last_id > high
