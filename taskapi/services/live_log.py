"""Reading the event log for the live streams: the rows after an id, and whether a replay
from an id is still possible (services/live.py)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection

from taskapi.core.db import Database
from taskapi.models import utcnow
from taskapi.services import events
from taskapi.services.live_events import Event

_TABLE = events.EVENTS
_AFTER = (select(_TABLE.c.id, _TABLE.c.type, _TABLE.c.task_id, _TABLE.c.audience,
                 _TABLE.c.data, _TABLE.c.created_at)
          .where(_TABLE.c.id > bindparam("after")).order_by(_TABLE.c.id)
          .limit(bindparam("limit")))
_HEAD = select(func.coalesce(func.max(_TABLE.c.id), 0))


async def read_after(db: Database, after: int, limit: int) -> list[Event]:
    """The events after `after`, in id order, at most `limit`. Core on Database.run (a read
    thread on SQLite, autocommit on PostgreSQL), not an ORM session: every worker runs this
    after every write (the mix's profile had the session path at ~17 % of the CPU)."""
    def work(conn: Connection) -> list[Event]:
        return [Event(r.id, r.type, r.task_id, frozenset(r.audience or ()), r.data,
                      r.created_at)
                for r in conn.execute(_AFTER, {"after": after, "limit": limit})]

    return await db.run(work)


async def head(db: Database) -> int:
    """The last event id (0: none), by the primary key's index: a few page reads."""
    return await db.run(lambda conn: int(conn.scalar(_HEAD) or 0), inline=True)


_FIRST_AFTER = (select(_TABLE.c.created_at).where(_TABLE.c.id > bindparam("after"))
                .order_by(_TABLE.c.id).limit(1))


async def needs_reset(db: Database, last_id: int, retention: int) -> bool:
    """Whether the events after `last_id` cannot be replayed: the first of them is older
    than the retention (its payload may be pruned: decision 040), or the id is past the
    log's end (another log's id). The client must refetch rather than replay."""
    def work(conn: Connection) -> bool:
        first = conn.scalar(_FIRST_AFTER, {"after": last_id})
        if first is not None:
            return bool(first < utcnow() - timedelta(seconds=retention))
        return last_id > int(conn.scalar(_HEAD) or 0)

    return await db.run(work)
