"""Database: SQLite tuning, concurrent writers, migrations that match the models."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.engine import Connection

from taskapi.core.db import Database
from taskapi.models import Base, Role, Task, User
from taskapi.models.search import compared


@pytest.fixture
async def db(database_url: str):  # type: ignore[no-untyped-def]
    database = Database.from_url(database_url)
    yield database
    await database.dispose()


async def test_sqlite_pragmas(db: Database) -> None:
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    async with db.engine.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
        assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 1  # NORMAL
        assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
        assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() >= 5000
    assert db.sync_engine is not None and db.inline_engine is not None
    with db.sync_engine.connect() as sync:
        assert sync.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert sync.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    with db.inline_engine.connect() as inline:  # runs on the event loop: never waits
        assert inline.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert inline.exec_driver_sql("PRAGMA busy_timeout").scalar() == 0


async def test_50_concurrent_read_then_write_transactions_all_commit(db: Database) -> None:
    """Each transaction reads, then writes: the pattern a deferred BEGIN fails on SQLite."""
    async with db.transaction() as session:
        session.add(User(username="owner", email="owner@example.test", password_hash="x",
                         role=Role.MANAGER, is_approved=True))

    async def one(i: int) -> None:
        async with db.transaction(write=True) as session:
            owner_id = await session.scalar(select(User.id).where(User.username == "owner"))
            count = await session.scalar(select(func.count(Task.id)))
            await asyncio.sleep(0)  # let the others interleave between read and write
            session.add(Task(title=f"task {i} after {count}", created_by=owner_id))

    results = await asyncio.gather(*(one(i) for i in range(50)), return_exceptions=True)
    assert [r for r in results if isinstance(r, BaseException)] == []
    async with db.transaction(write=False) as session:
        assert await session.scalar(select(func.count(Task.id))) == 50


async def test_run_is_one_unit_of_work(db: Database) -> None:
    """Database.run: committed when the work returns, nothing kept when it raises; the same
    on a thread, inline and (PostgreSQL) through run_sync."""
    async with db.transaction() as session:
        session.add(User(username="owner", email="owner@example.test", password_hash="x",
                         role=Role.MANAGER, is_approved=True))

    def add_two(conn: Connection, fail: bool) -> int:
        owner = conn.scalars(select(User.id).where(User.username == "owner")).one()
        conn.execute(insert(Task), [{"title": "a", "created_by": owner},
                                    {"title": "b", "created_by": owner}])
        if fail:
            raise LookupError("after the insert")
        return int(conn.scalar(select(func.count(Task.id))) or 0)

    assert await db.run(lambda s: add_two(s, False), write=True) == 2
    with pytest.raises(LookupError):
        await db.run(lambda s: add_two(s, True), write=True)
    assert await db.run(lambda s: s.scalar(select(func.count(Task.id))), inline=True) == 2
    renamed = await db.run(lambda s: s.execute(
        update(Task).where(Task.title == "a").values(title="A")).rowcount, single=True,
        inline=True)
    assert renamed == 1
    assert await db.run(lambda s: sorted(s.scalars(select(Task.title)))) == ["A", "b"]


async def test_inline_work_never_waits_on_the_event_loop(database_url: str, db: Database) -> None:
    """A write lock held by another connection: inline work meets it at once (no busy
    timeout on the loop's connection), moves to a thread that waits for the lock while the
    loop keeps running, and is applied once when the lock goes."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    async with db.transaction() as session:
        session.add(Task(title="t"))
    path = database_url.split("///", 1)[1]
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    ticks, longest_stall = 0, 0.0

    async def ticker() -> None:
        nonlocal ticks, longest_stall
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            longest_stall = max(longest_stall, loop.time() - before)
            ticks += 1

    async def release_later() -> None:
        await asyncio.sleep(0.5)
        holder.execute("COMMIT")

    ticking = asyncio.create_task(ticker())
    releasing = asyncio.create_task(release_later())
    await asyncio.sleep(0.05)  # the ticker is running
    try:
        changed = await db.run(lambda s: s.execute(
            update(Task).where(Task.title == "t").values(title="t2")).rowcount,
            single=True, inline=True)
    finally:
        ticking.cancel()
        await releasing
        holder.close()
    assert changed == 1
    # The loop ran while the work waited for the lock (0.5 s of 10 ms ticks), never stalled.
    assert ticks >= 20 and longest_stall < 0.2, (ticks, longest_stall)
    assert await db.run(lambda s: list(s.scalars(select(Task.title)))) == ["t2"]


async def test_run_survives_a_dropped_pooled_connection(db: Database) -> None:
    """PostgreSQL: Database.run's pool pings nothing at checkout; when the server has dropped
    the pooled connections (a restart), the work runs again on a new one and succeeds."""
    if db.autocommit_engine is None:
        pytest.skip("PostgreSQL only")
    pids = await asyncio.gather(*(db.run(lambda c: c.scalar(text("select pg_backend_pid()")))
                                  for _ in range(3)))
    async with db.engine.connect() as admin:
        killed = (await admin.execute(text(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity where pid = any(:p)"),
            {"p": list(set(pids))})).scalar()
    assert killed == len(set(pids)) >= 1
    await asyncio.sleep(0.2)
    again = await db.run(lambda c: c.scalar(text("select pg_backend_pid()")))
    assert again not in pids
    # Still an error when the work itself is wrong: only a dead connection is retried.
    with pytest.raises(Exception, match="no_such_table"):
        await db.run(lambda c: c.execute(text("select * from no_such_table")))


async def test_ids_are_never_reused(db: Database) -> None:
    async with db.transaction() as session:
        user = User(username="gone", email="gone@example.test", password_hash="x")
        session.add(user)
        await session.flush()
        first_id = user.id
        await session.delete(user)
    async with db.transaction() as session:
        user = User(username="next", email="next@example.test", password_hash="x")
        session.add(user)
        await session.flush()
        assert user.id > first_id


# SQLite does not reflect an expression index (the list sorts' on the deadline and the status
# rank, decision 046), PostgreSQL not as the models write it: they are left out of the
# comparison (taskapi.models.search.compared, as in migrations/env.py, with the search
# tables), and tests/test_query_plans.py checks that the lists use them.
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression")
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
async def test_migrations_match_models(db: Database) -> None:
    def diff(sync_conn):  # type: ignore[no-untyped-def]
        context = MigrationContext.configure(sync_conn, opts={
            "compare_type": True,
            "include_object": lambda _obj, name, type_, *_rest: compared(name, type_)})
        return compare_metadata(context, Base.metadata)

    async with db.engine.connect() as conn:
        assert await conn.run_sync(diff) == []
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        assert version is not None


async def test_datetimes_come_back_aware_utc(db: Database) -> None:
    async with db.transaction() as session:
        session.add(User(username="tz", email="tz@example.test", password_hash="x"))
    async with db.transaction(write=False) as session:
        user = await session.scalar(select(User).where(User.username == "tz"))
        assert user is not None and user.created_at.utcoffset() is not None
        assert user.created_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
