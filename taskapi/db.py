"""Engine, sessions and SQLite tuning.

SQLite: WAL, synchronous=NORMAL, foreign keys, a busy timeout, and write transactions that
begin IMMEDIATE. PostgreSQL: a lock_timeout of the same length. Either way a statement that
cannot get its lock in time fails (and the request answers 503, errors.py) rather than
waiting for as long as another process holds the lock. A deferred BEGIN that reads before it
writes fails under concurrency with "database is locked" whatever the busy timeout (the lock
upgrade cannot wait), so every session that may write takes the write lock up front.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Executable, event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

LOCK_TIMEOUT_S = 10.0
_IMMEDIATE = "taskapi_begin_immediate"
_NO_BEGIN = "taskapi_single_statement"


def _install_sqlite_hooks(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from the driver so "begin" below decides the mode.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=ON",
            f"PRAGMA busy_timeout={busy_timeout_ms}",
        ):
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get("isolation_level") == "AUTOCOMMIT" or options.get(_NO_BEGIN):
            return
        immediate = options.get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_engine(url: str, lock_timeout: float = LOCK_TIMEOUT_S, **kwargs: Any) -> AsyncEngine:
    """`lock_timeout` (seconds): SQLite's busy timeout, PostgreSQL's lock_timeout."""
    if url.startswith("sqlite"):
        # A connection per concurrent request: opening SQLite connections under load is
        # wasted work, and they are cheap to keep.
        kwargs.setdefault("pool_size", 32)
        kwargs.setdefault("max_overflow", 32)
        engine = create_async_engine(url, connect_args={"timeout": lock_timeout}, **kwargs)
        _install_sqlite_hooks(engine, int(lock_timeout * 1000))
        return engine
    kwargs.setdefault("pool_size", 16)
    kwargs.setdefault("max_overflow", 16)
    kwargs.setdefault("pool_pre_ping", True)
    if url.startswith("postgresql+asyncpg"):
        kwargs.setdefault("connect_args", {"server_settings": {
            "lock_timeout": str(int(lock_timeout * 1000))}})
    return create_async_engine(url, **kwargs)


@dataclass
class Database:
    """Two session factories: read (deferred BEGIN) and write (IMMEDIATE on SQLite).

    On SQLite, writes go through their own engine with a single connection: SQLite admits one
    writer at a time anyway, and queueing writers of this process in the pool (FIFO, in
    asyncio) instead of in SQLite's busy handler keeps waits short and fair under load. A
    burst of writers each holding a connection and spinning on the lock, while the holder
    waits for CPU, is what produced "database is locked" after the busy timeout.
    """

    engine: AsyncEngine
    write_engine: AsyncEngine | None = None

    def __post_init__(self) -> None:
        writer = (self.write_engine or self.engine).execution_options(**{_IMMEDIATE: True})
        self.read_sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.write_sessions = async_sessionmaker(writer, expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str, lock_timeout: float = LOCK_TIMEOUT_S, **kwargs: Any) -> Database:
        if url.startswith("sqlite"):
            # Writers queued behind a held lock give up too (503): 60 s by default.
            writer = create_engine(url, lock_timeout, pool_size=1, max_overflow=0,
                                   pool_timeout=max(6 * lock_timeout, 5.0))
            return cls(create_engine(url, lock_timeout, **kwargs), writer)
        return cls(create_engine(url, lock_timeout, **kwargs))

    def session(self, *, write: bool) -> AsyncSession:
        return (self.write_sessions if write else self.read_sessions)()

    @asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on error."""
        async with self.session(write=write) as session, session.begin():
            yield session

    async def write_once(self, statement: Executable) -> int:
        """Run one writing statement as its own transaction; the number of rows it changed.

        On SQLite no BEGIN is sent, so the statement commits by itself inside the driver's
        call: the write lock is held for the microseconds the statement runs in the driver
        thread, not across the awaits of a BEGIN … COMMIT, each of which waits its turn on an
        event loop busy with other requests (under load that held the lock for tens of ms per
        write and queued every writer of both processes behind it). Holding no lock between
        awaits, these statements need not queue for the single write connection either: they
        use the main pool, and meet other writers only inside SQLite's busy handler.
        """
        async with self.engine.connect() as conn:
            single = await conn.execution_options(**{_NO_BEGIN: True})
            result = await single.execute(statement)
            await single.commit()
            return int(getattr(result, "rowcount", 0))

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.write_engine is not None:
            await self.write_engine.dispose()
