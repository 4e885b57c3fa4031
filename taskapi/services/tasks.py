"""Task use cases: who may see and change what, and the lists."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from pydantic import TypeAdapter
from sqlalchemy import (
    ColumnElement,
    Executable,
    Integer,
    Table,
    bindparam,
    case,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import Connection
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


def _visible_to(actor: Actor, assignee: int | None) -> bool:
    """Staff see every task; anyone else only the tasks assigned to them."""
    return actor.role in STAFF or (assignee is not None and assignee == actor.id)


async def _get(session: AsyncSession, actor: Actor, task_id: int) -> Task:
    task = await session.get(Task, task_id)
    # Someone else's task is a 404, not a 403 that would confirm it exists.
    if task is None or not _visible_to(actor, task.assigned_user_id):
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


# Prebuilt Core statements for the hot status route: no per-request statement building, no ORM
# identity map; the rows go straight into TaskOut. (Bind names differ from the column names,
# which UPDATE reserves for its SET clause.)
_TASKS = cast(Table, Task.__table__)
_OUT = [_TASKS.c[name] for name in TaskOut.model_fields]
_SELECT_ONE = select(*_OUT).where(_TASKS.c.id == bindparam("b_id"))


def _status_update(assignee_only: bool) -> Executable:
    where = [_TASKS.c.id == bindparam("b_id"), _TASKS.c.status != bindparam("b_status")]
    if assignee_only:
        where.append(_TASKS.c.assigned_user_id == bindparam("b_user"))
    return (update(_TASKS).where(*where)
            .values(status=bindparam("b_status"), updated_at=bindparam("b_now"),
                    completed_at=bindparam("b_done"))
            .returning(*_OUT))


_SET_STATUS = {False: _status_update(False), True: _status_update(True)}


async def set_status(ctx: AppContext, actor: Actor, task_id: int,
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
    change = _SET_STATUS[actor.role not in STAFF]

    def work(conn: Connection) -> TaskOut:
        row = conn.execute(change, params).one_or_none()
        if row is None:  # nothing changed: already at that status, or not this caller's
            row = conn.execute(_SELECT_ONE, params).one_or_none()
            if row is None or not _visible_to(actor, row.assigned_user_id):
                raise not_found("task")
        return TaskOut.model_validate(row._asdict())

    async def write_and_bump() -> TaskOut:
        task = await ctx.db.run(work, single=True, inline=True)  # by primary key
        # Also when nothing changed: the work may have run twice (Database.run), the first
        # time committing the change.
        await _after_write(ctx, task.id, task.assigned_user_id)
        return task

    return await asyncio.shield(write_and_bump())


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


def _cursor_values(task: TaskOut, sort: str) -> list[Any]:
    if sort.endswith("created_at"):
        return [task.created_at.isoformat(), task.id]
    if sort.endswith("deadline"):
        return [(task.deadline or FAR_FUTURE).isoformat(), task.id]
    return [_rank(task.status), task.id]


def _rank(status: TaskStatus) -> int:
    return [TaskStatus.PENDING, TaskStatus.IN_PROGRESS, TaskStatus.COMPLETED].index(status)


def _cursor_params(sort: str, values: list[Any]) -> dict[str, Any]:
    """The cursor's (sort key, id), typed; a cursor that does not fit the sort is a 422."""
    first, last_id = values
    try:
        key = int(first) if sort == "status" else datetime.fromisoformat(str(first))
        return {"p_key": key, "p_last": int(last_id)}
    except (TypeError, ValueError):
        raise APIError(422, "invalid_cursor", "The cursor is not valid for this list.") from None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# The filters a list query may carry, as the bind parameters of its statements.
_FILTERS: dict[str, Callable[[], ColumnElement[bool]]] = {
    "p_user": lambda: Task.assigned_user_id == bindparam("p_user"),
    "p_status": lambda: Task.status == bindparam("p_status"),
    "p_due_before": lambda: Task.deadline < bindparam("p_due_before"),
    "p_due_after": lambda: Task.deadline >= bindparam("p_due_after"),
    "p_q": lambda: or_(Task.title.ilike(bindparam("p_q"), escape="\\"),
                       Task.description.ilike(bindparam("p_q"), escape="\\")),
}


@functools.lru_cache(maxsize=256)
def _list_statements(filters: frozenset[str], sort: str,
                     after: bool) -> tuple[Executable, Executable]:
    """(count, page) for one shape of list query, built once: a query's values are only
    bound. Building and coercing the statement cost more CPU than running it (2^5 filter
    sets x 5 sorts x cursor or not: a few hundred shapes at most)."""
    conditions = [_FILTERS[name]() for name in sorted(filters)]
    count = select(func.count(Task.id)).where(*conditions)
    exprs, descending = _sort(sort)
    if after:
        key = bindparam("p_key", type_=Integer() if sort == "status" else UTCDateTime())
        row, bound = tuple_(*exprs, Task.id), tuple_(key, bindparam("p_last", type_=Integer()))
        conditions.append(row < bound if descending else row > bound)
    order = [e.desc() if descending else e.asc() for e in (*exprs, Task.id)]
    page = (select(*_OUT).where(*conditions).order_by(*order)
            .limit(bindparam("p_limit", type_=Integer())))
    return count, page


def list_tasks(conn: Connection, actor: Actor, query: TaskListQuery,
               *, mine: bool) -> Page[TaskOut]:
    """`mine`: the caller's tasks (any role); otherwise all tasks (admins, managers).

    Synchronous: one unit of work for Database.run (on SQLite the count and the page read one
    snapshot; on PostgreSQL each autocommits, so a write between them may make the total
    differ from the pages by that write).
    """
    if not mine:
        require(actor, *STAFF)
    params: dict[str, Any] = {}
    if mine:  # the caller, whatever the query says: no filter or cursor can widen it
        params["p_user"] = actor.id
    elif query.assigned_user_id is not None:
        params["p_user"] = query.assigned_user_id
    if query.status is not None:
        params["p_status"] = TaskStatus(query.status)
    if query.due_before is not None:
        params["p_due_before"] = query.due_before
    if query.due_after is not None:
        params["p_due_after"] = query.due_after
    if query.q:
        params["p_q"] = f"%{_escape_like(query.q)}%"
    count, page = _list_statements(frozenset(params), query.sort, bool(query.cursor))
    total = conn.scalar(count, params) or 0
    if query.cursor:
        params.update(_cursor_params(query.sort, decode_cursor(query.cursor, 2)))
    rows = conn.execute(page, {**params, "p_limit": query.limit + 1}).all()
    more = len(rows) > query.limit
    items = _TASK_LIST.validate_python([row._asdict() for row in rows[: query.limit]])
    next_cursor = encode_cursor(_cursor_values(items[-1], query.sort)) if more else None
    return Page(items, next_cursor, total)


_TASK_LIST = TypeAdapter(list[TaskOut])


def mine_spec(user_id: int, variant: str) -> CacheSpec:
    """`variant`: the request's canonical query string (any spelling of it is its own key)."""
    return CacheSpec(f"c:mine:{user_id}:{digest(variant)}", [mine_version(user_id)])


def all_spec(variant: str) -> CacheSpec:
    return CacheSpec(f"c:tasks:{digest(variant)}", [tasks_version()])


def task_spec(task_id: int) -> CacheSpec:
    return CacheSpec(f"c:task:{task_id}", [task_version(task_id)])


async def list_tasks_cached(ctx: AppContext, actor: Actor, variant: str,
                            parse: Callable[[], TaskListQuery], *, mine: bool,
                            prefetched: Lookup | None = None) -> Entry:
    """list_tasks as a serialized response, from the cache when its versions still match.

    The query is parsed (and validated: 422) only on a miss; an invalid query is never stored.
    """
    if not mine:
        require(actor, *STAFF)
    spec = mine_spec(actor.id, variant) if mine else all_spec(variant)

    def build_page(conn: Connection, query: TaskListQuery) -> Entry:
        page = list_tasks(conn, actor, query, mine=mine)
        return Entry.of(_TASK_LIST.dump_json(page.items).decode(), total=str(page.total),
                        next=page.next_cursor or "")

    async def build() -> Entry:
        query = parse()  # a 422 before any database work
        # One user's tasks are a short index range; all tasks (a text search) may be a scan.
        return await ctx.db.run(lambda conn: build_page(conn, query), inline=mine)

    return await cached(ctx.cache, spec, build, prefetched)


async def get_task_cached(ctx: AppContext, actor: Actor, task_id: int,
                          prefetched: Lookup | None = None) -> Entry:
    """One task as a serialized response; visibility is checked on every request."""

    def load(conn: Connection) -> Entry:
        row = conn.execute(_SELECT_ONE, {"b_id": task_id}).one_or_none()
        if row is None:
            raise not_found("task")
        return Entry.of(TaskOut.model_validate(row._asdict()).model_dump_json(),
                        assignee=str(row.assigned_user_id or ""))

    async def build() -> Entry:
        return await ctx.db.run(load, inline=True)  # by primary key

    entry = await cached(ctx.cache, task_spec(task_id), build, prefetched)
    if not may_see_entry(actor, entry):
        raise not_found("task")  # someone else's task: not found, not forbidden
    return entry


def may_see_entry(actor: Actor, entry: Entry) -> bool:
    """Whether `actor` may be given this cached task (entries are shared between callers)."""
    assignee = entry.meta.get("assignee")
    return _visible_to(actor, int(assignee) if assignee else None)
