"""System-wide statistics for admins and managers."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.engine import Connection

from taskapi.core.cache import CacheSpec, Entry, Lookup, cached, tasks_version, users_version
from taskapi.core.state import AppState
from taskapi.models import Task, TaskDueCount, TaskStatus, UTCDateTime, utcnow
from taskapi.schemas.tasks import Stats
from taskapi.services.authstate import Actor
from taskapi.services.authz import STAFF, require
from taskapi.services.counts import tasks_by_status, user_totals


def get_stats(conn: Connection, actor: Actor) -> Stats:
    """Synchronous: one unit of work for Database.run (one snapshot on SQLite; on PostgreSQL
    each read autocommits, so the numbers may straddle a concurrent write).

    The totals are the counters (decision 045), overdue too: the open tasks due on the days
    before today from task_due_counts, and today's before now counted in the (status,
    deadline) index (one day's range)."""
    require(actor, *STAFF)
    total_users, pending = user_totals(conn)
    by_status = tasks_by_status(conn)
    overdue = overdue_count(conn, utcnow())
    return Stats(
        total_users=total_users,
        total_tasks=sum(by_status.values()),
        completed_tasks=by_status[TaskStatus.COMPLETED.value],
        tasks_by_status=by_status,  # type: ignore[arg-type]
        overdue_tasks=int(overdue),
        pending_approvals=pending,
    )


OPEN = [TaskStatus.PENDING, TaskStatus.IN_PROGRESS]


def overdue_count(conn: Connection, now: datetime) -> int:
    """Open tasks whose deadline is before `now`."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    before_today = conn.scalar(_DAYS_BEFORE, {"day": today.date().isoformat()})
    return int(before_today or 0) + int(conn.scalar(overdue_query(),
                                                    {"start": today, "now": now}) or 0)


_DAYS_BEFORE = select(func.sum(TaskDueCount.n)).where(
    TaskDueCount.status.in_([s.value for s in OPEN]), TaskDueCount.due_day < bindparam("day"))


def overdue_query() -> Select[int]:
    """Open tasks due in [start, now) (today, up to now): two ranges of
    ix_tasks_status_deadline."""
    return select(func.count()).select_from(Task).where(
        Task.status.in_(OPEN), Task.deadline >= bindparam("start", type_=UTCDateTime()),
        Task.deadline < bindparam("now", type_=UTCDateTime()))


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
