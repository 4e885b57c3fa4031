"""services/events.py on PostgreSQL: an event writer holds the log's lock from its id to its
commit, so a second writer's id comes after the first one's commit (decision 022): a reader
that has seen id N never later finds a smaller id committed."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from taskapi.core.db import Database
from taskapi.services import events


async def test_a_second_writer_waits_for_the_first_ones_commit(database_url: str, make_user) -> None:  # type: ignore[no-untyped-def]
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only (SQLite has one writer at a time)")
    staff = await make_user("manager")
    db = Database.from_url(database_url)
    try:
        def row(n: int) -> dict[str, object]:
            return events.values(events.DELETED, n, staff.id, [], {"id": n})

        async with db.engine.connect() as first, first.begin():
            await first.run_sync(lambda c: events.record_sync(c, row(1)))

            async def second() -> None:
                async with db.engine.connect() as conn, conn.begin():
                    await conn.run_sync(lambda c: events.record_sync(c, row(2)))

            waiting = asyncio.create_task(second())
            await asyncio.sleep(0.5)
            assert not waiting.done()  # held up by the first writer's lock
        await asyncio.wait_for(waiting, 10)
        async with db.engine.connect() as conn:
            ids = (await conn.execute(text(
                "SELECT task_id FROM task_events WHERE task_id IN (1, 2) ORDER BY id"))).all()
        assert [r[0] for r in ids] == [1, 2]
    finally:
        await db.dispose()
