"""Task commands: create, update, status, assign, delete.

Each records its event (services/events.py) in its own transaction, and returns the task
with its ETag (the new version). `if_match`: the request's If-Match, or None.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.core.errors import not_found
from taskapi.core.shielded import run_to_end
from taskapi.core.state import AppState
from taskapi.models import Role, Task, TaskStatus, utcnow
from taskapi.schemas.tasks import TaskAssign, TaskCreate, TaskOut, TaskStatusUpdate, TaskUpdate
from taskapi.services import events, idempotency, notifications
from taskapi.services.authstate import Actor
from taskapi.services.authz import STAFF, require
from taskapi.services.preconditions import (
    IfMatch,
    check,
    conditional_commit,
    etag,
    lock_row,
    precondition_failed,
)
from taskapi.services.tasks.access import after_write, assignable, visible_to
from taskapi.services.tasks.statements import SELECT_LOCKED, SELECT_ONE, SET_STATUS

Written = tuple[TaskOut, str]  # the task and its new ETag


async def _load(session: AsyncSession, actor: Actor, task_id: int,
                if_match: IfMatch | None) -> Task:
    """The task to change, for a caller who may see it (else 404), at a version If-Match
    names (else 412). Locked on PostgreSQL unless the write compares versions instead."""
    # populate_existing: the row as the database has it now, even if this session had
    # loaded it before (its version is what the UPDATE compares).
    query = select(Task).where(Task.id == task_id).execution_options(populate_existing=True)
    task = await session.scalar(query.with_for_update() if lock_row(if_match) else query)
    # Someone else's task is a 404, not a 403 that would confirm it exists.
    if task is None or not visible_to(actor, task.assigned_user_id):
        raise not_found("task")
    check(if_match, task.version)
    return task


async def create_task(session: AsyncSession, ctx: AppState, actor: Actor,
                      data: TaskCreate) -> Written:
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
    out = TaskOut.model_validate(task)
    await idempotency.settle(session, (out, etag(task.version)))
    await events.record(session, events.values(
        events.CREATED, task.id, actor.id, [task.assigned_user_id], events.snapshot(out),
        events.created(out.model_dump())))
    await session.commit()
    await after_write(ctx, task.id, task.assigned_user_id)
    if email_key:
        await notifications.dispatch(ctx.redis, email_key)
    return out, etag(task.version)


async def update_task(session: AsyncSession, ctx: AppState, actor: Actor, task_id: int,
                      data: TaskUpdate, if_match: IfMatch | None = None) -> Written:
    require(actor, *STAFF)
    async with conditional_commit(session):
        task = await _load(session, actor, task_id, if_match)
        before = TaskOut.model_validate(task).model_dump()
        for field, value in data.model_dump(exclude_unset=True).items():
            setattr(task, field, value)
        await session.flush()  # UPDATE … WHERE version = the one read
        out = TaskOut.model_validate(task)
        changes = events.diff(before, out.model_dump())
        if changes:
            await events.record(session, events.values(
                events.UPDATED, task.id, actor.id, [task.assigned_user_id],
                events.snapshot(out), changes))
    await after_write(ctx, task.id, task.assigned_user_id)
    return out, etag(task.version)


async def set_status(ctx: AppState, actor: Actor, task_id: int, data: TaskStatusUpdate,
                     if_match: IfMatch | None = None) -> Written:
    """The assignee, managers and admins; only the status (and completed_at) changes.

    Core statements on one connection (Database.run): read the row (locked unless If-Match
    compares versions), then UPDATE … WHERE version = the one read, and the event, in one
    transaction. A task the caller may not see answers 404 like any other route. The write
    and the cache bump after it are shielded from a client that disconnects in between: a
    committed change always moves the versions, so no reader sees the old list.
    """
    status = TaskStatus(data.status)
    now = utcnow()
    params = {"b_id": task_id, "b_status": status, "b_now": now,
              "b_done": now if status == TaskStatus.COMPLETED else None}

    def work(conn: Connection) -> tuple[TaskOut, int]:
        row = conn.execute(SELECT_LOCKED if lock_row(if_match) else SELECT_ONE,
                           params).one_or_none()
        if row is None or not visible_to(actor, row.assigned_user_id):
            raise not_found("task")
        check(if_match, row.version)
        if row.status == status:  # nothing to change
            return TaskOut.model_validate(row._asdict()), row.version
        new = conn.execute(SET_STATUS, {**params, "b_version": row.version}).one_or_none()
        if new is None:  # changed since it was read (only when not locked)
            raise precondition_failed()
        out = TaskOut.model_validate(new._asdict())
        events.record_sync(conn, events.values(
            events.STATUS_CHANGED, task_id, actor.id, [out.assigned_user_id],
            events.snapshot(out), {"status": {"from": row.status, "to": status.value}}))
        return out, new.version

    async def write_and_bump() -> Written:
        task, version = await ctx.db.run(work, write=True, inline=True)  # by primary key
        # Also when nothing changed: the work may have run twice (Database.run), the first
        # time committing the change.
        await after_write(ctx, task.id, task.assigned_user_id)
        return task, etag(version)

    return await run_to_end(write_and_bump(), f"the status change of task {task_id}")


async def assign_task(session: AsyncSession, ctx: AppState, actor: Actor, task_id: int,
                      data: TaskAssign, if_match: IfMatch | None = None) -> Written:
    require(actor, *STAFF)
    email_key = None
    async with conditional_commit(session):
        task = await _load(session, actor, task_id, if_match)
        previous = task.assigned_user_id
        assignee = (await assignable(session, data.user_id, "user_id")
                    if data.user_id is not None else None)
        if previous == data.user_id:
            return TaskOut.model_validate(task), etag(task.version)
        task.assigned_user_id = data.user_id
        if assignee is not None:
            task.assign_seq += 1
        await session.flush()
        if assignee is not None:
            email_key = await notifications.assigned(session, ctx.settings, task, assignee,
                                                       actor.id)
        out = TaskOut.model_validate(task)
        await events.record(session, events.values(
            events.ASSIGNED, task.id, actor.id, [previous, data.user_id],
            {**events.snapshot(out), "previous_assigned_user_id": previous},
            {"assigned_user_id": {"from": previous, "to": data.user_id}}))
    await after_write(ctx, task.id, previous, task.assigned_user_id)
    if email_key:
        await notifications.dispatch(ctx.redis, email_key)
    return out, etag(task.version)


async def delete_task(session: AsyncSession, ctx: AppState, actor: Actor, task_id: int,
                      if_match: IfMatch | None = None) -> None:
    require(actor, Role.ADMIN)
    async with conditional_commit(session):
        task = await _load(session, actor, task_id, if_match)
        assignee = task.assigned_user_id
        await session.delete(task)
        await session.flush()  # DELETE … WHERE version = the one read
        await events.record(session, events.values(
            events.DELETED, task_id, actor.id, [assignee], {"id": task_id}))
    await after_write(ctx, task_id, assignee)
