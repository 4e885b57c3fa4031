"""Engine, sessions and SQLite tuning.

SQLite: WAL, synchronous=NORMAL, foreign keys, a busy timeout, and write transactions that
begin IMMEDIATE. PostgreSQL: a lock_timeout of the same length. Either way a statement that
cannot get its lock in time fails, and the request answers 503 (decision 001).

The hot task routes do not use the per-request session: see Database.run (decision 003).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import Engine, event, make_url
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from taskapi.core.sqlite_writer import WriterTurns

T = TypeVar("T")


def insert_ignoring(dialect: str, table: Any, rows: Sequence[dict[str, Any]],
                    keys: list[str]) -> Any:
    """INSERT … ON CONFLICT (keys) DO NOTHING, the same on SQLite and PostgreSQL: rows that
    another writer (a second worker, a rerun) inserted first are left as they are."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).values(list(rows)).on_conflict_do_nothing(index_elements=keys)


LOCK_TIMEOUT_S = 10.0
_IMMEDIATE = "taskapi_begin_immediate"
_NO_BEGIN = "taskapi_single_statement"
# Threads that run units of work on SQLite (Database.run). SQLite runs with the GIL released,
# the Python around it holds it: more threads than this add switching, not throughput.
SQLITE_READ_THREADS = 4
_INLINE_PAUSE_S, _INLINE_PAUSE_MAX_S = 0.0005, 0.002  # an inline write's retries, doubling


def _install_sqlite_hooks(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
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

    @event.listens_for(engine, "begin")
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
        _install_sqlite_hooks(engine.sync_engine, int(lock_timeout * 1000))
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

    On SQLite, writes go through their own engine with a single connection, so the writers of
    this process queue in the pool (FIFO) rather than in SQLite's busy handler (decision 002).
    """

    engine: AsyncEngine
    write_engine: AsyncEngine | None = None
    # SQLite only: the same file through the stdlib driver, for Database.run: on threads,
    # and on the event loop (one connection, no busy timeout).
    sync_engine: Engine | None = None
    inline_engine: Engine | None = None
    # PostgreSQL only: connections in autocommit, for Database.run's reads and statements.
    autocommit_engine: AsyncEngine | None = None
    # SQLite on a file: Database.run's writers of every process take turns (decision 049).
    writer_turns: WriterTurns | None = None
    lock_timeout: float = LOCK_TIMEOUT_S
    _threads: dict[str, ThreadPoolExecutor] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        writer = (self.write_engine or self.engine).execution_options(**{_IMMEDIATE: True})
        self.read_sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.write_sessions = async_sessionmaker(writer, expire_on_commit=False)
        if self.sync_engine is not None and self.inline_engine is not None:
            modes: list[tuple[str, dict[str, bool]]] = [
                ("read", {}), ("write", {_IMMEDIATE: True}), ("single", {_NO_BEGIN: True})]
            self._sync_engines = {
                prefix + mode: engine.execution_options(**options)
                for prefix, engine in (("", self.sync_engine), ("inline-", self.inline_engine))
                for mode, options in modes
            }
            # Write transactions queue in one thread, reads and single statements run side by
            # side. Why: docs/decisions/002-sqlite-single-writer.md
            self._threads = {
                "read": ThreadPoolExecutor(SQLITE_READ_THREADS, "taskapi-db-read"),
                "write": ThreadPoolExecutor(1, "taskapi-db-write"),
            }

    @classmethod
    def from_url(cls, url: str, lock_timeout: float = LOCK_TIMEOUT_S, **kwargs: Any) -> Database:
        if url.startswith("sqlite"):
            # Writers queued behind a held lock give up too (503): 60 s by default.
            writer = create_engine(url, lock_timeout, pool_size=1, max_overflow=0,
                                   pool_timeout=max(6 * lock_timeout, 5.0))
            sync_url = make_url(url).set(drivername="sqlite")
            threaded = create_sync_engine(
                sync_url, pool_size=SQLITE_READ_THREADS + 1, max_overflow=0,
                connect_args={"timeout": lock_timeout, "check_same_thread": False})
            _install_sqlite_hooks(threaded, int(lock_timeout * 1000))
            inline = create_sync_engine(sync_url, pool_size=1, max_overflow=1,
                                        connect_args={"timeout": 0})
            _install_sqlite_hooks(inline, 0)
            file = sync_url.database
            turns = (WriterTurns(Path(file), lock_timeout / 2)
                     if file and file != ":memory:" and not file.startswith("file:") else None)
            return cls(create_engine(url, lock_timeout, **kwargs), writer, threaded, inline,
                       writer_turns=turns, lock_timeout=lock_timeout)
        # Per process at most 24 + 16 connections (a PostgreSQL default allows 100 in all).
        sessions = create_engine(url, lock_timeout, **{"pool_size": 12, "max_overflow": 12,
                                                       **kwargs})
        # Autocommit, no checkout ping. Why: docs/decisions/006-postgresql-autocommit-pool.md
        autocommit = create_engine(url, lock_timeout, pool_size=8, max_overflow=8,
                                   isolation_level="AUTOCOMMIT", pool_pre_ping=False)
        return cls(sessions, autocommit_engine=autocommit)

    def session(self, *, write: bool) -> AsyncSession:
        return (self.write_sessions if write else self.read_sessions)()

    @asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed on success, rolled back on error."""
        async with self.session(write=write) as session, session.begin():
            yield session

    async def run(self, work: Callable[[Connection], T], *, write: bool = False,
                  single: bool = False, inline: bool = False) -> T:
        """`work`, plain synchronous Core statements on a Connection, as one unit of work;
        its return value (decisions 003, 005, 006).

        On SQLite one transaction, committed when `work` returns and rolled back if it
        raises (`write`: it takes the write lock up front, BEGIN IMMEDIATE). `single`: no
        transaction around the statements, each commits by itself: for work whose one
        writing statement comes first, so that on SQLite the write lock is held only while
        that statement runs. Return plain values: objects are detached afterwards. `work` may
        be run twice (SQLite `inline` work that meets a lock; PostgreSQL work whose pooled
        connection turns out dead), so it must do nothing but database work.

        SQLite: the whole of `work` runs in one call, through the stdlib driver, on a worker
        thread (write transactions queued on one, the rest on SQLITE_READ_THREADS).

        `inline` (SQLite): work the caller knows to be a few index lookups (a primary key,
        one user's tasks) runs right here on the event loop. It never blocks there: its
        connection has no busy timeout; a write that meets a lock is rolled back and tried
        again after short sleeps (decision 049), other work runs again on a thread, which
        waits the normal busy timeout. Unbounded work (a text search
        over all tasks, counts over the whole table) must not be inline: it would stall every
        request of the worker.

        PostgreSQL: the same code through AsyncConnection.run_sync, each statement awaited
        on asyncpg; only `write` work gets a transaction, the rest autocommits (`inline`
        changes nothing).
        """
        if self.sync_engine is None:
            if write:
                async with self.engine.connect() as conn, conn.begin():
                    return await conn.run_sync(work)
            # Each statement commits by itself: no BEGIN and COMMIT round trips.
            # Why: docs/decisions/006-postgresql-autocommit-pool.md
            try:
                return await self._autocommit(work)
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                # A pooled connection the server had dropped (a restart): SQLAlchemy has
                # discarded the whole pool; once more on a new connection.
                # Why: docs/decisions/006-postgresql-autocommit-pool.md
                return await self._autocommit(work)
        mode = "single" if single else "write" if write else "read"
        turns = self.writer_turns if write and not single else None
        if inline:
            done, result = await self._run_inline(mode, work, single, write, turns)
            if done:
                return cast(T, result)
            turns = None  # it waited its share for a turn: SQLite's busy timeout decides now
        pool = self._threads["write" if write else "read"]
        return await asyncio.get_running_loop().run_in_executor(
            pool, _run_in_turn, turns, self._sync_engines[mode], work, single)

    async def _run_inline(self, mode: str, work: Callable[[Connection], T], single: bool,
                          write: bool, turns: WriterTurns | None) -> tuple[bool, T | None]:
        """`work` on the event loop: (True, its result), or (False, None) when it must run
        on a thread after all. A write that meets another writer (another process's turn,
        SQLite's lock) waits for it here, in short asyncio sleeps, up to half the busy timeout:
        on the write thread it would also wait for the GIL, which this loop holds while busy,
        up to the 5 ms switch interval at each of its statements (decision 049)."""
        engine = self._sync_engines["inline-" + mode]
        deadline = time.monotonic() + self.lock_timeout / 2
        pause = _INLINE_PAUSE_S
        while True:
            held = turns is not None and turns.acquire(wait=False)
            if held or turns is None or turns.broken:  # broken: no lock file, SQLite's alone
                try:
                    return True, _run_sqlite(engine, work, single)
                except OperationalError as exc:
                    if not _sqlite_busy(exc):
                        raise
                finally:
                    if held:
                        turns.release()  # type: ignore[union-attr]
            if not write or time.monotonic() >= deadline:
                return False, None
            await asyncio.sleep(pause)
            pause = min(2 * pause, _INLINE_PAUSE_MAX_S)

    async def _autocommit(self, work: Callable[[Connection], T]) -> T:
        async with (self.autocommit_engine or self.engine).connect() as conn:
            if self.autocommit_engine is None:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            return await conn.run_sync(work)

    async def dispose(self) -> None:
        for pool in self._threads.values():
            pool.shutdown(wait=True)
        if self.writer_turns is not None:
            self.writer_turns.close()
        for engine in (self.sync_engine, self.inline_engine):
            if engine is not None:
                engine.dispose()
        if self.autocommit_engine is not None:
            await self.autocommit_engine.dispose()
        await self.engine.dispose()
        if self.write_engine is not None:
            await self.write_engine.dispose()


def _run_in_turn(turns: WriterTurns | None, engine: Engine, work: Callable[[Connection], T],
                 single: bool) -> T:
    held = turns is not None and turns.acquire(wait=True)
    try:
        return _run_sqlite(engine, work, single)
    finally:
        if held:
            turns.release()  # type: ignore[union-attr]


def _run_sqlite(engine: Engine, work: Callable[[Connection], T], single: bool) -> T:
    with engine.connect() as conn:
        if single:
            result = work(conn)
            conn.commit()  # no BEGIN was sent: nothing is pending on SQLite's side
            return result
        with conn.begin():
            return work(conn)


def _sqlite_busy(exc: OperationalError) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED (primary codes 5 and 6, any extended code)."""
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (5, 6)
