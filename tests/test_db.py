"""Database: SQLite tuning, concurrent writers, migrations that match the models."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select, text

from taskapi.db import Database
from taskapi.models import Base, Role, Task, User


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


async def test_migrations_match_models(db: Database) -> None:
    def diff(sync_conn):  # type: ignore[no-untyped-def]
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
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
