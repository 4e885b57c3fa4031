"""A task's history, read from the event log (services/events.py)."""

from __future__ import annotations

from pydantic import TypeAdapter
from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.core.errors import not_found
from taskapi.core.pagination import Page, decode_cursor, encode_cursor
from taskapi.models import Role, Task
from taskapi.schemas.activity import HistoryEntry, PageQuery
from taskapi.schemas.common import Id
from taskapi.services import events
from taskapi.services.authstate import Actor
from taskapi.services.tasks.access import visible_to

_CURSOR = TypeAdapter(tuple[Id])  # the last entry's id


async def may_read_story(session: AsyncSession, actor: Actor, task_id: int) -> bool:
    """Whether the task exists and `actor` may see it; a deleted task's story is the admins'."""
    row = (await session.execute(
        select(Task.id, Task.assigned_user_id).where(Task.id == task_id))).one_or_none()
    if row is not None:
        return visible_to(actor, row.assigned_user_id)
    return actor.role == Role.ADMIN and bool(await session.scalar(
        select(exists().where(events.EVENTS.c.task_id == task_id))))


async def task_history(session: AsyncSession, actor: Actor, task_id: int,
                       query: PageQuery) -> Page[HistoryEntry]:
    """Oldest first, keyset pages by event id; 404 for a task the caller may not see."""
    if not await may_read_story(session, actor, task_id):
        raise not_found("task")
    table = events.EVENTS
    total = await session.scalar(
        select(func.count()).select_from(table).where(table.c.task_id == task_id)) or 0
    statement = events.HISTORY.where(table.c.task_id == task_id)
    if query.cursor:
        (after,) = decode_cursor(query.cursor, _CURSOR)
        statement = statement.where(table.c.id > after)
    rows = (await session.execute(statement.limit(query.limit + 1))).all()
    more = len(rows) > query.limit
    items = [HistoryEntry(id=row.id, at=row.created_at, actor_id=row.actor_id,
                          action=events.ACTIONS[row.type], changes=row.changes)
             for row in rows[: query.limit]]
    return Page(items, encode_cursor([items[-1].id]) if more else None, total)
