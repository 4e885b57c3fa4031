"""A deleted user's tasks: unassigned (and their creator forgotten) as changes of their own."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.models import Task
from taskapi.schemas.tasks import TaskOut
from taskapi.services import events
from taskapi.services.authstate import Actor


async def unlink_tasks(session: AsyncSession, actor: Actor, user_id: int) -> list[int]:
    """Before deleting a user: clear them from the tasks they are assigned or created, through
    the ORM rather than the foreign key's SET NULL, so each task's version moves (its ETag
    and cached copy change) and an unassignment is in its history. The ids of those tasks."""
    tasks = list(await session.scalars(
        select(Task).where(or_(Task.assigned_user_id == user_id, Task.created_by == user_id))
        .order_by(Task.id).with_for_update()))
    for task in tasks:
        previous = task.assigned_user_id
        if task.created_by == user_id:
            task.created_by = None
        if previous == user_id:
            task.assigned_user_id = None
        await session.flush()
        if previous == user_id:
            out = TaskOut.model_validate(task)
            await events.record(session, events.values(
                events.ASSIGNED, task.id, actor.id, [previous],
                {**events.snapshot(out), "previous_assigned_user_id": previous},
                {"assigned_user_id": {"from": previous, "to": None}}))
    return [task.id for task in tasks]
