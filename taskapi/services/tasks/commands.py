"""Task commands: create, update, status, assign, delete."""

from __future__ import annotations

import asyncio

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.core.errors import not_found
from taskapi.core.state import AppState
from taskapi.models import Role, Task, TaskStatus, utcnow
from taskapi.schemas.tasks import TaskAssign, TaskCreate, TaskOut, TaskStatusUpdate, TaskUpdate
from taskapi.services import notifications
from taskapi.services.authstate import Actor
from taskapi.services.authz import STAFF, require
from taskapi.services.tasks.access import after_write, assignable, get_visible, visible_to
from taskapi.services.tasks.statements import SELECT_ONE, SET_STATUS


async def create_task(session: AsyncSession, ctx: AppState, actor: Actor,
                      data: TaskCreate) -> TaskOut:
    require(actor, *STAFF)
    assignee = None
    if data.assigned_user_id is not None:
        assignee = await assignable(session, data.assigned_user_id, "assigned_user_id")
    task = Task(title=data.title, description=data.description, deadline=data.deadline,
                assigned_user_id=data.assigned_user_id, created_by=actor.id,
                assign_seq=1 if assignee else 0, status=TaskStatus.PENDING)
    session.add(task)
    await session.flush()
    email_key = None
    if assignee is not None:
        email_key = await notifications.assigned(session, ctx.settings, task, assignee,
                                                   actor.id)
    await session.commit()
    await after_write(ctx, task.id, task.assigned_user_id)
    if email_key:
        await notifications.dispatch(ctx.redis, email_key)
    return TaskOut.model_validate(task)


async def update_task(session: AsyncSession, ctx: AppState, actor: Actor, task_id: int,
                      data: TaskUpdate) -> TaskOut:
    require(actor, *STAFF)
    task = await get_visible(session, actor, task_id)
    for field, value in data.model_dump(exclude_unset=True).items():
        setattr(task, field, value)
    await session.commit()
    await after_write(ctx, task.id, task.assigned_user_id)
    return TaskOut.model_validate(task)


async def set_status(ctx: AppState, actor: Actor, task_id: int,
                     data: TaskStatusUpdate) -> TaskOut:
    """The assignee, managers and admins; only the status (and completed_at) changes.

    One conditional UPDATE … RETURNING that commits by itself (Database.run, single): a task
    the caller may not see is changed by nothing and answers 404 like any other route. The
    write and the cache bump after it are shielded from a client that disconnects in
    between: a committed change always moves the versions, so no reader sees the old list.
    """
    status = TaskStatus(data.status)
    now = utcnow()
    params = {"b_id": task_id, "b_status": status, "b_now": now, "b_user": actor.id,
              "b_done": now if status == TaskStatus.COMPLETED else None}
    change = SET_STATUS[actor.role not in STAFF]

    def work(conn: Connection) -> TaskOut:
        row = conn.execute(change, params).one_or_none()
        if row is None:  # nothing changed: already at that status, or not this caller's
            row = conn.execute(SELECT_ONE, params).one_or_none()
            if row is None or not visible_to(actor, row.assigned_user_id):
                raise not_found("task")
        return TaskOut.model_validate(row._asdict())

    async def write_and_bump() -> TaskOut:
        task = await ctx.db.run(work, single=True, inline=True)  # by primary key
        # Also when nothing changed: the work may have run twice (Database.run), the first
        # time committing the change.
        await after_write(ctx, task.id, task.assigned_user_id)
        return task

    return await asyncio.shield(write_and_bump())


async def assign_task(session: AsyncSession, ctx: AppState, actor: Actor, task_id: int,
                      data: TaskAssign) -> TaskOut:
    require(actor, *STAFF)
    task = await get_visible(session, actor, task_id)
    previous = task.assigned_user_id
    assignee = (await assignable(session, data.user_id, "user_id")
                if data.user_id is not None else None)
    if previous == data.user_id:
        return TaskOut.model_validate(task)
    task.assigned_user_id = data.user_id
    email_key = None
    if assignee is not None:
        task.assign_seq += 1
        email_key = await notifications.assigned(session, ctx.settings, task, assignee,
                                                   actor.id)
    await session.commit()
    await after_write(ctx, task.id, previous, task.assigned_user_id)
    if email_key:
        await notifications.dispatch(ctx.redis, email_key)
    return TaskOut.model_validate(task)


async def delete_task(session: AsyncSession, ctx: AppState, actor: Actor, task_id: int) -> None:
    require(actor, Role.ADMIN)
    task = await get_visible(session, actor, task_id)
    assignee = task.assigned_user_id
    await session.delete(task)
    await session.commit()
    await after_write(ctx, task_id, assignee)
