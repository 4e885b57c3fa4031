"""The database briefly locked by another process, under a real `taskapi serve --workers 2`.

SQLite: a sqlite3 connection holds the write lock (BEGIN EXCLUSIVE) longer than the busy
timeout. PostgreSQL: another connection holds EXCLUSIVE locks on the tables the writes need,
longer than the lock_timeout. Writes (status change, task creation with its email, login)
answer 503 problem+json with Retry-After and change nothing; reads keep answering; once the
lock is released every write succeeds again.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from taskapi.models import AuthSession, EmailOutbox, Task
from tests.support.faults import serve_logs
from tests.support.processes import cli_env, serve
from tests.support.values import PASSWORD

CLOSE = {"Connection": "close"}  # a new connection per request: both workers answer


@asynccontextmanager
async def _locked(database_url: str) -> AsyncIterator[None]:
    """Another process's transaction holding the locks every write of the test needs."""
    if database_url.startswith("sqlite"):
        conn = sqlite3.connect(database_url.split("///", 1)[1], isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            conn.rollback()
            conn.close()
        return
    import asyncpg

    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    transaction = conn.transaction()
    await transaction.start()
    await conn.execute("LOCK TABLE tasks, auth_sessions, email_outbox IN EXCLUSIVE MODE")
    try:
        yield
    finally:
        await transaction.rollback()
        await conn.close()


async def _snapshot(db: Any) -> tuple[list[tuple[int, str]], int, int]:
    async with db.session(write=False) as session:
        tasks = [(t.id, t.status.value) for t in await session.scalars(
            select(Task).order_by(Task.id))]
        sessions = await session.scalar(select(func.count(AuthSession.id)))
        emails = await session.scalar(select(func.count(EmailOutbox.id)))
    return tasks, int(sessions or 0), int(emails or 0)


async def test_database_locked_writes_503_nothing_partial_then_recovers(tmp_path: Path, database_url: str, redis_url: str, redis_sync, db, make_user) -> None:  # type: ignore[no-untyped-def]
    manager = await make_user("manager")
    employee = await make_user("employee")
    env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=database_url,
                  TASKAPI_REDIS_URL=redis_url, TASKAPI_RATE_LIMIT_LOGIN="10000/minute",
                  TASKAPI_DB_LOCK_TIMEOUT="1",
                  # Logins wait for their password check however slow a loaded machine makes
                  # it, rather than 503 busy (test_hardening_login.py tests that).
                  TASKAPI_PASSWORD_QUEUE_WAIT="60")
    with serve(env, "--workers", "2") as base:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            created = await client.post("/tasks", headers=manager.headers, json={
                "title": "before", "assigned_user_id": employee.id})
            assert created.status_code == 201
            task_id = created.json()["id"]
            before = await _snapshot(db)

            def writes(tag: str) -> list[Any]:
                return [
                    client.put(f"/task/{task_id}/status", headers={**employee.headers, **CLOSE},
                               json={"status": "completed"}),
                    client.post("/tasks", headers={**manager.headers, **CLOSE}, json={
                        "title": f"during {tag}", "assigned_user_id": employee.id}),
                    client.post("/login", headers=CLOSE, json={"email": employee.email,
                                                               "password": PASSWORD}),
                ]

            async with _locked(database_url):
                responses = await asyncio.gather(*(w for i in range(3) for w in writes(str(i))))
                for response in responses:
                    assert response.status_code == 503, response.text
                    assert response.headers["Content-Type"] == "application/problem+json"
                    assert int(response.headers["Retry-After"]) > 0
                    body = response.json()
                    assert body["code"] == "database_unavailable" and body["status"] == 503
                    assert "Traceback" not in response.text
                # Reads still answer while writers are locked out.
                mine = await client.get("/tasks/mine", headers=employee.headers)
                assert mine.status_code == 200
                assert [t["status"] for t in mine.json()] == ["pending"]
                # Nothing half-written: no status change, task, session or email.
                assert await _snapshot(db) == before

            after = await asyncio.gather(*writes("after"))
            assert [r.status_code for r in after] == [200, 201, 200]
            mine = await client.get("/tasks/mine", headers=employee.headers)
            assert {t["status"] for t in mine.json()} == {"completed", "pending"}
            tasks, sessions, emails = await _snapshot(db)
            assert len(tasks) == 2 and sessions == before[1] + 1 and emails == before[2] + 1
    log = serve_logs(tmp_path)
    assert "Traceback" not in log and "unhandled error" not in log
    assert "database unavailable" in log
