"""The bench's data, straight in the database (SQLAlchemy core bulk inserts through the
project's models): a fresh database, approved users, tasks assigned round-robin, growing
and shrinking the tasks table, and the ids each token's owner may read.

Shared by tasks_load.py and load_1000.py.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from servers import flush_redis

PASSWORD = "bench password 123"


def database_urls(args: argparse.Namespace, data_dir: Path) -> tuple[str, str]:
    """(TASKAPI_DATABASE_URL for the server, the async SQLAlchemy URL for seeding)."""
    if args.database == "sqlite":
        path = (data_dir / "taskapi.db").resolve()
        return f"sqlite:///{path}", f"sqlite+aiosqlite:///{path}"
    url = f"{args.pg_url.rstrip('/')}/{args.pg_database}"
    return url, url.replace("postgresql://", "postgresql+asyncpg://", 1)


async def pg_recreate(args: argparse.Namespace, *, create: bool) -> None:
    import asyncpg

    conn = await asyncpg.connect(f"{args.pg_url.rstrip('/')}/postgres", timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{args.pg_database}" WITH (FORCE)')
        if create:
            await conn.execute(f'CREATE DATABASE "{args.pg_database}"')
    finally:
        await conn.close()


def fresh_database(args: argparse.Namespace, env: dict[str, str], tmp: Path, tapi: str) -> bool:
    """Flush the bench Redis, (re)create the PostgreSQL database, migrate. True when a
    PostgreSQL database was created (the caller drops it)."""
    flush_redis(args.redis_url)
    if args.database == "postgres":
        asyncio.run(pg_recreate(args, create=True))
    # cwd = the temp dir: settings also read a `.env` from the working directory.
    subprocess.run([tapi, "db", "upgrade"], env=env, cwd=tmp, check=True,
                   capture_output=True, timeout=120)
    return args.database == "postgres"


def employee_email(i: int) -> str:
    return f"bench.emp.{i:04d}@example.test"


def manager_email(i: int) -> str:
    return f"bench.mgr.{i:02d}@example.test"


async def seed_users(sa_url: str, employees: int, managers: int,
                     password_hash: str) -> tuple[list[int], list[int]]:
    """Approved employees and managers in one bulk insert each; their ids in order."""
    from sqlalchemy import insert, select
    from sqlalchemy.ext.asyncio import create_async_engine

    from taskapi.models import Role, User

    now = datetime.now(UTC)

    def row(username: str, email: str, role: Role) -> dict[str, Any]:
        return {"username": username, "email": email, "password_hash": password_hash,
                "role": role, "is_approved": True, "created_at": now, "updated_at": now}

    engine = create_async_engine(sa_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(User), [row(f"bench_emp_{i:04d}", employee_email(i),
                                                  Role.EMPLOYEE) for i in range(employees)])
            await conn.execute(insert(User), [row(f"bench_mgr_{i:02d}", manager_email(i),
                                                  Role.MANAGER) for i in range(managers)])
            ids = dict((await conn.execute(select(User.email, User.id))).all())
    finally:
        await engine.dispose()
    return ([ids[employee_email(i)] for i in range(employees)],
            [ids[manager_email(i)] for i in range(managers)])


DESCRIPTIONS = (
    "",
    "Check the quarterly numbers and send the summary to the team.",
    "Follow up with the customer about the open ticket; attach the logs.",
    "Review the pull request, run the tests locally and leave comments on anything unclear.",
)


def task_rows(start: int, count: int, employee_ids: list[int], manager_ids: list[int],
              now: datetime) -> Iterator[dict[str, Any]]:
    """Task i: assigned round-robin (employee i mod E), status i mod 3, deadline none / past
    / future, created_at increasing with i (all in the past)."""
    from taskapi.models import TaskStatus

    cycle = (TaskStatus.PENDING, TaskStatus.IN_PROGRESS, TaskStatus.COMPLETED)
    origin = now - timedelta(days=120)
    for i in range(start, start + count):
        status = cycle[i % 3]
        created = origin + timedelta(seconds=30 * i)
        deadline = None if i % 5 == 0 else now + timedelta(days=(i % 61) - 20, hours=i % 24)
        yield {
            "title": f"Bench task {i}",
            "description": DESCRIPTIONS[i % len(DESCRIPTIONS)],
            "status": status,
            "deadline": deadline,
            "assigned_user_id": employee_ids[i % len(employee_ids)],
            "created_by": manager_ids[i % len(manager_ids)],
            "created_at": created,
            "updated_at": created,
            "completed_at": created + timedelta(hours=1) if status is TaskStatus.COMPLETED
            else None,
            "assign_seq": 1,
        }


def seed_engine(sa_url: str) -> Any:
    """The seeding engine. SQLite: wait up to 60 s for the write lock (the server may still be
    finishing writes queued by the last load run)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    if sa_url.startswith("sqlite"):
        return create_async_engine(sa_url, connect_args={"timeout": 60})
    return create_async_engine(sa_url)


async def seed_tasks(sa_url: str, start: int, count: int, employee_ids: list[int],
                     manager_ids: list[int], *, chunk: int = 10_000) -> None:
    from sqlalchemy import insert

    from taskapi.models import Task

    now = datetime.now(UTC)
    rows = task_rows(start, count, employee_ids, manager_ids, now)
    engine = seed_engine(sa_url)
    try:
        done = 0
        while done < count:
            batch = [next(rows) for _ in range(min(chunk, count - done))]
            async with engine.begin() as conn:
                await conn.execute(insert(Task), batch)
            done += len(batch)
    finally:
        await engine.dispose()


async def after_bulk_load(sa_url: str, database: str) -> str:
    """PostgreSQL: ANALYZE tasks (what autovacuum would do soon anyway, but not in the middle
    of a measured run). SQLite: checkpoint the WAL the bulk insert left behind."""
    from sqlalchemy import text

    engine = seed_engine(sa_url)
    try:
        async with engine.begin() as conn:
            if database == "postgres":
                await conn.execute(text("ANALYZE tasks"))
                return "ANALYZE tasks"
            row = (await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))).one()
            return f"PRAGMA wal_checkpoint(TRUNCATE) -> busy={row[0]} log={row[1]} moved={row[2]}"
    finally:
        await engine.dispose()


async def owned_task_ids(sa_url: str, owners: list[int]) -> tuple[dict[int, list[int]], int]:
    """(task ids assigned to each owner, in id order; the number of tasks in the table)"""
    from sqlalchemy import func, select
    from sqlalchemy.ext.asyncio import create_async_engine

    from taskapi.models import Task

    engine = create_async_engine(sa_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(Task.assigned_user_id, Task.id)
                                       .where(Task.assigned_user_id.in_(owners))
                                       .order_by(Task.id))).all()
            total = int((await conn.execute(select(func.count(Task.id)))).scalar_one())
    finally:
        await engine.dispose()
    out: dict[int, list[int]] = {o: [] for o in owners}
    for owner, task_id in rows:
        if owner is not None:
            out[owner].append(task_id)
    return out, total



async def max_task_id(sa_url: str) -> int:
    from sqlalchemy import func, select

    from taskapi.models import Task

    engine = seed_engine(sa_url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.max(Task.id)))).scalar_one())
    finally:
        await engine.dispose()


async def shrink_tasks(sa_url: str, database: str, max_id: int) -> str:
    """Delete the tasks above max_id and compact the table (and its indexes)."""
    from sqlalchemy import delete, text

    from taskapi.models import Task

    engine = seed_engine(sa_url)
    try:
        async with engine.begin() as conn:
            deleted = (await conn.execute(delete(Task).where(Task.id > max_id))).rowcount
        async with engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            if database == "postgres":
                await auto.execute(text("VACUUM FULL tasks"))
                await auto.execute(text("ANALYZE tasks"))
                return f"deleted {deleted}; VACUUM FULL tasks; ANALYZE tasks"
            await auto.execute(text("VACUUM"))
            await auto.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
            return f"deleted {deleted}; VACUUM; PRAGMA wal_checkpoint(TRUNCATE)"
    finally:
        await engine.dispose()

