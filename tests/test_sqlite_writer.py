"""core/sqlite_writer.py: SQLite writers of different processes take turns on a lock file,
and the next one starts as soon as the last one is done, not at SQLite's next busy retry.

Two WriterTurns on one file hold two open file descriptions, so their flocks exclude each
other exactly as two processes' do."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from taskapi.core.db import Database
from taskapi.core.sqlite_writer import WriterTurns


def test_one_turn_at_a_time_and_the_next_starts_at_once(tmp_path: Path) -> None:
    a, b = WriterTurns(tmp_path / "t.db", 5.0), WriterTurns(tmp_path / "t.db", 5.0)
    assert a.acquire(wait=True)
    assert not b.acquire(wait=False)
    got: list[float] = []
    waiter = threading.Thread(target=lambda: got.append(b.acquire(wait=True) and time.monotonic()))
    waiter.start()
    time.sleep(0.2)
    assert not got  # still waiting
    released = time.monotonic()
    a.release()
    waiter.join(5)
    assert got and got[0] - released < 0.05
    assert not a.acquire(wait=False)
    b.release()
    assert a.acquire(wait=False)
    a.release()
    a.close(), b.close()


def test_a_turn_not_had_in_time_is_given_up(tmp_path: Path) -> None:
    a, b = WriterTurns(tmp_path / "t.db", 5.0), WriterTurns(tmp_path / "t.db", 0.2)
    assert a.acquire(wait=True)
    started = time.monotonic()
    assert not b.acquire(wait=True)
    assert 0.2 <= time.monotonic() - started < 1.0
    a.release()
    assert b.acquire(wait=False)  # its process lock was released on giving up
    b.release()


def test_no_lock_file_where_none_can_be_made(tmp_path: Path) -> None:
    turns = WriterTurns(tmp_path / "missing-dir" / "t.db", 1.0)
    assert not turns.acquire(wait=True)  # SQLite's lock alone decides
    assert not turns.acquire(wait=False)


@pytest.mark.parametrize("inline", [True, False])
async def test_a_write_waits_for_the_other_process_turn(tmp_path: Path, inline: bool) -> None:
    db = Database.from_url(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    try:
        await db.run(lambda c: c.execute(text("CREATE TABLE t (n INTEGER)")), write=True)
        other = WriterTurns(tmp_path / "w.db", 5.0)  # another process writing
        assert db.writer_turns is not None and other.acquire(wait=True)
        write = asyncio.create_task(db.run(
            lambda c: c.execute(text("INSERT INTO t VALUES (1)")), write=True, inline=inline))
        await asyncio.sleep(0.3)
        assert not write.done()  # waiting for its turn (inline: in short sleeps on the loop)
        released = time.monotonic()
        other.release()
        await asyncio.wait_for(write, 5)
        assert time.monotonic() - released < 0.1
        assert await db.run(lambda c: c.scalar(text("SELECT count(*) FROM t"))) == 1
        other.close()
    finally:
        await db.dispose()


async def test_where_no_lock_file_can_be_made_writes_go_on_at_once(tmp_path: Path) -> None:
    db = Database.from_url(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    try:
        await db.run(lambda c: c.execute(text("CREATE TABLE t (n INTEGER)")), write=True)
        assert db.writer_turns is not None
        db.writer_turns.path = tmp_path / "missing-dir" / "w.db-writer"  # the fault
        db.writer_turns.close()
        started = time.monotonic()
        for inline in (True, False, True):
            await db.run(lambda c: c.execute(text("INSERT INTO t VALUES (1)")), write=True,
                         inline=inline)
        assert time.monotonic() - started < 1.0  # no wait for a turn that cannot be had
        assert db.writer_turns.broken
        assert await db.run(lambda c: c.scalar(text("SELECT count(*) FROM t"))) == 3
    finally:
        await db.dispose()
