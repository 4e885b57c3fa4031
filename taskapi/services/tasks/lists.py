"""Task lists: filters, sorts and keyset cursors, one prebuilt page statement per query shape."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field, TypeAdapter
from sqlalchemy import (
    ColumnElement,
    Executable,
    Integer,
    and_,
    bindparam,
    literal_column,
    or_,
    select,
)
from sqlalchemy.engine import Connection

from taskapi.core.pagination import Page, decode_cursor, encode_cursor
from taskapi.models import Task, TaskStatus, UTCDateTime
from taskapi.models.task import (
    FAR_FUTURE,
    STATUS_ORDER,
    deadline_nulls_last,
    due_range,
    far_due,
    status_rank,
)
from taskapi.schemas.common import CursorInstant, Id
from taskapi.schemas.tasks import TaskListQuery, TaskOut
from taskapi.services.authstate import Actor
from taskapi.services.authz import STAFF, require
from taskapi.services.counts import task_total
from taskapi.services.tasks.search import (
    candidates,
    due_candidates,
    escape_like,
    holds,
    ids_in,
)
from taskapi.services.tasks.statements import OUT


def _sort(sort: str, filters: frozenset[str]) -> tuple[Any, bool]:
    """(the sort key before the id tie-breaker, or None for the id alone; descending?)"""
    if sort in ("created_at", "-created_at"):
        return Task.created_at, sort.startswith("-")
    if sort in ("deadline", "-deadline"):
        return deadline_nulls_last(), sort.startswith("-")
    # Within one status every rank is the same: ordered by id, on the (status, id) index
    # (one person's tasks stay on their rank index, which checks the status row by row).
    by_id = "p_status" in filters and "p_user" not in filters
    return (None if by_id else status_rank()), False


def _cursor_values(task: TaskOut, sort: str) -> list[Any]:
    if sort.endswith("created_at"):
        return [task.created_at.isoformat(), task.id]
    if sort.endswith("deadline"):
        return [(task.deadline or FAR_FUTURE).isoformat(), task.id]
    return [_rank(task.status), task.id]


def _rank(status: TaskStatus) -> int:
    return STATUS_ORDER.index(status)


# What each sort's cursors hold: (sort key, id), as _cursor_values hands them out.
_Rank = Annotated[int, Field(ge=0, le=len(TaskStatus) - 1)]
_TIME_CURSOR: TypeAdapter[tuple[Any, int]] = TypeAdapter(tuple[CursorInstant, Id])
_RANK_CURSOR: TypeAdapter[tuple[Any, int]] = TypeAdapter(tuple[_Rank, Id])


def _cursor_params(sort: str, cursor: str) -> dict[str, Any]:
    """The cursor's (sort key, id), typed; a cursor that does not fit the sort is a 422."""
    shape = _RANK_CURSOR if sort == "status" else _TIME_CURSOR
    key, last_id = decode_cursor(cursor, shape)
    return {"p_key": key, "p_last": last_id}


# The filters a list query may carry, as the bind parameters of its statements.
_FILTERS: dict[str, Callable[[], ColumnElement[bool]]] = {
    "p_user": lambda: Task.assigned_user_id == bindparam("p_user"),
    "p_status": lambda: Task.status == bindparam("p_status"),
    "p_due_before": lambda: Task.deadline < bindparam("p_due_before"),
    "p_due_after": lambda: Task.deadline >= bindparam("p_due_after"),
    "p_q": lambda: holds(Task.title, Task.description, "p_q"),
    "p_ids": lambda: ids_in("p_ids"),  # a search's candidates (services/tasks/search.py)
}


_DUE = frozenset({"p_due_before", "p_due_after"})


@functools.lru_cache(maxsize=512)
def _list_statements(filters: frozenset[str], sort: str, after: bool,
                     far: bool = False) -> Executable:
    """The page statement of one shape of list query, built once: a query's values are only
    bound. Building and coercing the statement cost more CPU than running it (2^5 filter
    sets, a search's with candidates or not, x 5 sorts x cursor or not: 480 shapes at most)."""
    where = {name: _FILTERS[name]() for name in sorted(filters)}
    expr, descending = _sort(sort, filters)
    if {"p_user", "p_status"} <= filters:
        # One person's tasks are few: walk their sort's index and check the status on each,
        # rather than the status's index over everyone's (the planner, without statistics,
        # may take either): the status written so that no index serves it (decision 046).
        where["p_status"] = (Task.status + literal_column("''")) == bindparam("p_status")
    conditions = list(where.values())
    if sort.endswith("deadline") and filters & _DUE:
        # On the sort's own index the due dates bound the walk (decision 047).
        conditions = [c for name, c in where.items() if name not in _DUE]
        if far:  # the tasks due at FAR_FUTURE itself: due_after's other part (_page_rows)
            conditions.append(far_due())
        else:
            conditions += due_range(*(bindparam(name, type_=UTCDateTime()) if name in filters
                                      else None for name in ("p_due_before", "p_due_after")),
                                    below_far=True)
    if after:
        # (key, id) after the cursor's, spelled so that the key's range is an index bound
        # on both databases (SQLite does not bound an expression index by a row value).
        key = bindparam("p_key", type_=Integer() if sort == "status" else UTCDateTime())
        last = bindparam("p_last", type_=Integer())
        if expr is None:  # status sort within one status: the id alone moves on
            conditions.append(Task.id > last)
        elif descending:
            conditions.append(and_(expr <= key, or_(expr < key, Task.id < last)))
        else:
            conditions.append(and_(expr >= key, or_(expr > key, Task.id > last)))
    keys = (Task.id,) if expr is None else (expr, Task.id)
    order = [e.desc() if descending else e.asc() for e in keys]
    page = (select(*OUT).where(*conditions).order_by(*order)
            .limit(bindparam("p_limit", type_=Integer())))
    return page


def list_tasks(conn: Connection, actor: Actor, query: TaskListQuery,
               *, mine: bool) -> Page[TaskOut]:
    """`mine`: the caller's tasks (any role); otherwise all tasks (admins, managers).

    Synchronous: one unit of work for Database.run (on SQLite the page and the counters read
    one snapshot; on PostgreSQL each autocommits, so a write between them may make the total
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
        params["p_q"] = f"%{escape_like(query.q)}%"
        if (found := candidates(conn, query.q)) is not None:
            params["p_ids"] = found
    if ("p_ids" not in params and "p_user" not in params and not query.sort.endswith("deadline")
            and (query.due_before or query.due_after)):
        # One person's tasks are few; a deadline sort walks the range itself.
        if (found := due_candidates(conn, query.due_before, query.due_after)) is not None:
            params["p_ids"] = found
    filters = frozenset(params)
    if query.cursor:
        params.update(_cursor_params(query.sort, query.cursor))
    rows = _page_rows(conn, filters, params, query)
    more = len(rows) > query.limit
    items = TASK_LIST.validate_python([row._asdict() for row in rows[: query.limit]])
    next_cursor = encode_cursor(_cursor_values(items[-1], query.sort)) if more else None
    return Page(items, next_cursor, _total(conn, params, query, len(items), more))


def _page_rows(conn: Connection, filters: frozenset[str], params: dict[str, Any],
               query: TaskListQuery) -> list[Any]:
    """The page's rows and one more. due_after alone on a deadline sort reads two bounded
    ranges of the deadline's index rather than one that reaches the tasks without a deadline
    (all at FAR_FUTURE there): the range below FAR_FUTURE, and the tasks due at FAR_FUTURE
    itself, which sort after every other deadline (first when descending)."""
    parts = [False]
    if (query.sort.endswith("deadline") and "p_due_after" in filters
            and "p_due_before" not in filters):
        parts = [True, False] if query.sort.startswith("-") else [False, True]
    rows: list[Any] = []
    for far in parts:
        need = query.limit + 1 - len(rows)
        if need > 0:
            page = _list_statements(filters, query.sort, bool(query.cursor), far)
            rows += conn.execute(page, {**params, "p_limit": need}).all()
    return rows


# The filters a counter answers (decision 045): the rest (due dates, q) count nothing.
_COUNTED = frozenset({"p_user", "p_status"})


def _total(conn: Connection, params: dict[str, Any], query: TaskListQuery, shown: int,
           more: bool) -> int | None:
    """X-Total-Count: from the counters when they serve the filters; otherwise only when
    the first page is the whole list (its length), else None (no header): counting a
    search or a deadline range would scan what the page did not need to."""
    if _COUNTED.issuperset(params.keys() - {"p_key", "p_last"}):
        status = params.get("p_status")
        return task_total(conn, params.get("p_user"), status.value if status else None)
    return shown if not query.cursor and not more else None


TASK_LIST = TypeAdapter(list[TaskOut])
