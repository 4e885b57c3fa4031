"""System-wide statistics for admins and managers."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from taskapi.core.cache import CacheSpec, Entry, Lookup, cached, tasks_version, users_version
from taskapi.core.state import AppState
from taskapi.models import Task, TaskStatus, User, utcnow
from taskapi.schemas.tasks import Stats
from taskapi.services.authstate import Actor
from taskapi.services.authz import STAFF, require


def get_stats(conn: Connection, actor: Actor) -> Stats:
    """Synchronous: one unit of work for Database.run (one snapshot on SQLite; on PostgreSQL
    each count autocommits, so the counts may straddle a concurrent write)."""
    require(actor, *STAFF)
    now = utcnow()
    users_row = (conn.execute(select(
        func.count(User.id),
        func.count(User.id).filter(User.is_approved.is_(False)),
    ))).one()
    by_status = {status.value: 0 for status in TaskStatus}
    for status, count in conn.execute(
        select(Task.status, func.count(Task.id)).group_by(Task.status)
    ):
        by_status[TaskStatus(status).value] = int(count)
    overdue = conn.scalar(select(func.count(Task.id)).where(
        Task.status != TaskStatus.COMPLETED, Task.deadline < now)) or 0
    return Stats(
        total_users=int(users_row[0]),
        total_tasks=sum(by_status.values()),
        completed_tasks=by_status[TaskStatus.COMPLETED.value],
        tasks_by_status=by_status,  # type: ignore[arg-type]
        overdue_tasks=int(overdue),
        pending_approvals=int(users_row[1]),
    )


# Short: overdue_tasks changes with the clock, not only with writes.
STATS_TTL = 30


async def get_stats_cached(ctx: AppState, actor: Actor,
                           prefetched: Lookup | None = None) -> Entry:
    require(actor, *STAFF)

    async def build() -> Entry:
        return await ctx.db.run(lambda conn: Entry.of(get_stats(conn, actor).model_dump_json()))

    return await cached(ctx.cache, stats_spec(), build, prefetched)


def stats_spec() -> CacheSpec:
    return CacheSpec("c:stats", [tasks_version(), users_version()], ttl=STATS_TTL)
