"""Task use cases: who may see and change what, and the lists."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import ColumnElement, case, func, literal, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from ..cache import (
    CacheSpec,
    Entry,
    Lookup,
    bump,
    cached,
    digest,
    mine_version,
    task_version,
    tasks_version,
)
from ..context import AppContext
from ..exceptions import APIError, not_found
from ..models import Role, Task, TaskStatus, User, UTCDateTime, utcnow
from ..models.task import FAR_FUTURE, deadline_nulls_last
from ..pagination import Page, decode_cursor, encode_cursor
from ..schemas.tasks import (
    TaskAssign,
    TaskCreate,
    TaskListQuery,
    TaskOut,
    TaskStatusUpdate,
    TaskUpdate,
)
from . import notifications
from .authstate import Actor
from .authz import STAFF, require

_STATUS_RANK = case(
    {TaskStatus.PENDING.value: 0, TaskStatus.IN_PROGRESS.value: 1, TaskStatus.COMPLETED.value: 2},
    value=Task.status, else_=3,
)


def _visible_to(actor: Actor, task: Task) -> bool:
    return actor.role in STAFF or task.assigned_user_id == actor.id


async def _get(session: AsyncSession, actor: Actor, task_id: int) -> Task:
    task = await session.get(Task, task_id)
    # Someone else's task is a 404, not a 403 that would confirm it exists.
    if task is None or not _visible_to(actor, task):
        raise not_found("task")
    return task


async def _assignable(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is not None and user.is_approved:
        return user
    raise APIError(422, "invalid_assignee", "assigned user must be an existing, approved user",
                       errors=[{"loc": ["assigned_user_id"], "msg": "no such approved user",
                                "type": "value_error"}])


async def _after_write(ctx: AppContext, task_id: int, *affected_users: int | None) -> None:
    await bump(ctx.redis, tasks_version(), task_version(task_id),
               *(mine_version(uid) for uid in affected_users if uid is not None))


async def create_task(session: AsyncSession, ctx: AppContext, actor: Actor,
                      data: TaskCreate) -> TaskOut:
    require(actor, *STAFF)
    assignee = None
    if data.assigned_user_id is not None:
        assignee = await _assignable(session, data.assigned_user_id)
    task = Task(title=data.title, description=data.description, deadline=data.deadline,
                assigned_user_id=data.assigned_user_id, created_by=actor.id,
                assign_seq=1 if assignee else 0, status=TaskStatus.PENDING)
    session.add(task)
    await session.flush()
    email_key = None
    if assignee is not None:
        email_key = await notifications.assigned(session, ctx.settings, task, assignee)
    await session.commit()
    await _after_write(ctx, task.id, task.assigned_user_id)
    if email_key:
        await notifications.dispatch(ctx.redis, email_key)
    return TaskOut.model_validate(task)


async def update_task(session: AsyncSession, ctx: AppContext, actor: Actor, task_id: int,
                      data: TaskUpdate) -> TaskOut:
    require(actor, *STAFF)
    task = await _get(session, actor, task_id)
    for field, value in data.model_dump(exclude_unset=True).items():
        setattr(task, field, value)
    await session.commit()
    await _after_write(ctx, task.id, task.assigned_user_id)
    return TaskOut.model_validate(task)


async def set_status(session: AsyncSession, ctx: AppContext, actor: Actor, task_id: int,
                     data: TaskStatusUpdate) -> TaskOut:
    """The assignee, managers and admins; only the status (and completed_at) changes.

    One conditional UPDATE (see Database.write_once), then the task is read back: a task the
    caller may not see is changed by nothing and answers 404 like any other route."""
    status = TaskStatus(data.status)
    visible = [] if actor.role in STAFF else [Task.assigned_user_id == actor.id]
    changed = await ctx.db.write_once(
        update(Task)
        .where(Task.id == task_id, Task.status != status, *visible)
        .values(status=status, updated_at=utcnow(),
                completed_at=utcnow() if status == TaskStatus.COMPLETED else None)
    )
    task = await _get(session, actor, task_id)
    if changed:
        await _after_write(ctx, task.id, task.assigned_user_id)
    return TaskOut.model_validate(task)


async def assign_task(session: AsyncSession, ctx: AppContext, actor: Actor, task_id: int,
                      data: TaskAssign) -> TaskOut:
    require(actor, *STAFF)
    task = await _get(session, actor, task_id)
    previous = task.assigned_user_id
    assignee = await _assignable(session, data.user_id) if data.user_id is not None else None
    if previous == data.user_id:
        return TaskOut.model_validate(task)
    task.assigned_user_id = data.user_id
    email_key = None
    if assignee is not None:
        task.assign_seq += 1
        email_key = await notifications.assigned(session, ctx.settings, task, assignee)
    await session.commit()
    await _after_write(ctx, task.id, previous, task.assigned_user_id)
    if email_key:
        await notifications.dispatch(ctx.redis, email_key)
    return TaskOut.model_validate(task)


async def delete_task(session: AsyncSession, ctx: AppContext, actor: Actor, task_id: int) -> None:
    require(actor, Role.ADMIN)
    task = await _get(session, actor, task_id)
    assignee = task.assigned_user_id
    await session.delete(task)
    await session.commit()
    await _after_write(ctx, task_id, assignee)


def _sort(sort: str) -> tuple[list[Any], bool]:
    """(sort expressions before the id tie-breaker, descending?)"""
    if sort in ("created_at", "-created_at"):
        return [Task.created_at], sort.startswith("-")
    if sort in ("deadline", "-deadline"):
        return [deadline_nulls_last()], sort.startswith("-")
    return [_STATUS_RANK], False


def _cursor_values(task: Task, sort: str) -> list[Any]:
    if sort.endswith("created_at"):
        return [task.created_at.isoformat(), task.id]
    if sort.endswith("deadline"):
        return [(task.deadline or FAR_FUTURE).isoformat(), task.id]
    return [_rank(task.status), task.id]


def _rank(status: TaskStatus) -> int:
    return [TaskStatus.PENDING, TaskStatus.IN_PROGRESS, TaskStatus.COMPLETED].index(status)


def _after(sort: str, values: list[Any]) -> ColumnElement[bool]:
    exprs, descending = _sort(sort)
    first, last_id = values
    try:
        if sort == "status":
            key: Any = literal(int(first))
        else:
            key = literal(datetime.fromisoformat(str(first)), UTCDateTime())
        last_id = int(last_id)
    except (TypeError, ValueError):
        raise APIError(422, "invalid_cursor", "The cursor is not valid for this list.") from None
    row, bound = tuple_(*exprs, Task.id), tuple_(key, literal(last_id))
    return row < bound if descending else row > bound


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_tasks(session: AsyncSession, actor: Actor, query: TaskListQuery,
                     *, mine: bool) -> Page[TaskOut]:
    """`mine`: the caller's tasks (any role); otherwise all tasks (admins, managers)."""
    if not mine:
        require(actor, *STAFF)
    conditions: list[ColumnElement[bool]] = []
    if mine:  # the caller, whatever the query says: no filter or cursor can widen it
        conditions.append(Task.assigned_user_id == actor.id)
    elif query.assigned_user_id is not None:
        conditions.append(Task.assigned_user_id == query.assigned_user_id)
    if query.status is not None:
        conditions.append(Task.status == TaskStatus(query.status))
    if query.due_before is not None:
        conditions.append(Task.deadline < query.due_before)
    if query.due_after is not None:
        conditions.append(Task.deadline >= query.due_after)
    if query.q:
        pattern = f"%{_escape_like(query.q)}%"
        conditions.append(or_(Task.title.ilike(pattern, escape="\\"),
                              Task.description.ilike(pattern, escape="\\")))
    total = await session.scalar(select(func.count(Task.id)).where(*conditions)) or 0
    if query.cursor:
        conditions.append(_after(query.sort, decode_cursor(query.cursor, 2)))
    exprs, descending = _sort(query.sort)
    order = [e.desc() if descending else e.asc() for e in (*exprs, Task.id)]
    rows = list(await session.scalars(
        select(Task).where(*conditions).order_by(*order).limit(query.limit + 1)
    ))
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    next_cursor = encode_cursor(_cursor_values(rows[-1], query.sort)) if more else None
    return Page([TaskOut.model_validate(t) for t in rows], next_cursor, total)


_TASK_LIST = TypeAdapter(list[TaskOut])


def mine_spec(user_id: int, variant: str) -> CacheSpec:
    """`variant`: the request's canonical query string (any spelling of it is its own key)."""
    return CacheSpec(f"c:mine:{user_id}:{digest(variant)}", [mine_version(user_id)])


def all_spec(variant: str) -> CacheSpec:
    return CacheSpec(f"c:tasks:{digest(variant)}", [tasks_version()])


def task_spec(task_id: int) -> CacheSpec:
    return CacheSpec(f"c:task:{task_id}", [task_version(task_id)])


async def list_tasks_cached(session: AsyncSession, ctx: AppContext, actor: Actor, variant: str,
                            parse: Callable[[], TaskListQuery], *, mine: bool,
                            prefetched: Lookup | None = None) -> Entry:
    """list_tasks as a serialized response, from the cache when its versions still match.

    The query is parsed (and validated: 422) only on a miss; an invalid query is never stored.
    """
    if not mine:
        require(actor, *STAFF)
    spec = mine_spec(actor.id, variant) if mine else all_spec(variant)

    async def build() -> Entry:
        page = await list_tasks(session, actor, parse(), mine=mine)
        return Entry.of(_TASK_LIST.dump_json(page.items).decode(), total=str(page.total),
                        next=page.next_cursor or "")

    return await cached(ctx.cache, spec, build, prefetched)


async def get_task_cached(session: AsyncSession, ctx: AppContext, actor: Actor, task_id: int,
                          prefetched: Lookup | None = None) -> Entry:
    """One task as a serialized response; visibility is checked on every request."""

    async def build() -> Entry:
        task = await session.get(Task, task_id)
        if task is None:
            raise not_found("task")
        return Entry.of(TaskOut.model_validate(task).model_dump_json(),
                        assignee=str(task.assigned_user_id or ""))

    entry = await cached(ctx.cache, task_spec(task_id), build, prefetched)
    if not may_see_entry(actor, entry):
        raise not_found("task")  # someone else's task: not found, not forbidden
    return entry


def may_see_entry(actor: Actor, entry: Entry) -> bool:
    """Whether `actor` may be given this cached task (entries are shared between callers)."""
    return actor.role in STAFF or entry.meta.get("assignee") == str(actor.id)
