"""Cached task reads: one task and the two lists as serialized responses, and their cache keys."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Connection

from taskapi.core.cache import (
    CacheSpec,
    Entry,
    Lookup,
    cached,
    digest,
    mine_version,
    task_version,
    tasks_version,
)
from taskapi.core.errors import not_found
from taskapi.core.state import AppState
from taskapi.schemas.tasks import TaskListQuery, TaskOut
from taskapi.services.authstate import Actor
from taskapi.services.authz import STAFF, require
from taskapi.services.preconditions import etag
from taskapi.services.tasks.access import visible_to
from taskapi.services.tasks.lists import TASK_LIST, list_tasks
from taskapi.services.tasks.statements import SELECT_ONE


def mine_spec(user_id: int, variant: str) -> CacheSpec:
    """`variant`: the request's canonical query string (any spelling of it is its own key)."""
    return CacheSpec(f"c:mine:{user_id}:{digest(variant)}", [mine_version(user_id)])


def all_spec(variant: str) -> CacheSpec:
    return CacheSpec(f"c:tasks:{digest(variant)}", [tasks_version()])


def task_spec(task_id: int) -> CacheSpec:
    return CacheSpec(f"c:task:{task_id}", [task_version(task_id)])


async def list_tasks_cached(ctx: AppState, actor: Actor, variant: str,
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
        total = {} if page.total is None else {"total": str(page.total)}
        return Entry.of(TASK_LIST.dump_json(page.items).decode(), **total,
                        next=page.next_cursor or "")

    async def build() -> Entry:
        query = parse()  # a 422 before any database work
        # One user's tasks are a short index range; all tasks (a text search) may be a scan.
        return await ctx.db.run(lambda conn: build_page(conn, query), inline=mine)

    return await cached(ctx.cache, spec, build, prefetched)


def _task_entry(conn: Connection, task_id: int) -> Entry:
    row = conn.execute(SELECT_ONE, {"b_id": task_id}).one_or_none()
    if row is None:
        raise not_found("task")
    body = TaskOut.model_validate(row._asdict()).model_dump_json()
    # The ETag is the version: what If-Match compares, and what a write answers with.
    return Entry(etag(row.version), {"assignee": str(row.assigned_user_id or "")}, body)


async def build_task_entry(ctx: AppState, task_id: int) -> Entry:
    """One task as a cache entry, from one prebuilt statement by primary key (no ORM); the
    cache-miss build of GET /task/{id}, in Quart or before it (http/cached_reads.py)."""
    return await ctx.db.run(lambda conn: _task_entry(conn, task_id), inline=True)


async def get_task_cached(ctx: AppState, actor: Actor, task_id: int,
                          prefetched: Lookup | None = None) -> Entry:
    """One task as a serialized response; visibility is checked on every request."""
    entry = await cached(ctx.cache, task_spec(task_id), lambda: build_task_entry(ctx, task_id),
                         prefetched)
    if not may_see_entry(actor, entry):
        raise not_found("task")  # someone else's task: not found, not forbidden
    return entry


def may_see_entry(actor: Actor, entry: Entry) -> bool:
    """Whether `actor` may be given this cached task (entries are shared between callers)."""
    assignee = entry.meta.get("assignee")
    return visible_to(actor, int(assignee) if assignee else None)
