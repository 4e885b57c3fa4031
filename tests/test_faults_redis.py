"""Redis stopped mid-traffic under a real `taskapi serve --workers 2`.

The database is the source of truth: while Redis is away, reads, writes and logins answer
from it, rate limits fail open, revoked tokens stay revoked. When Redis comes back with the
keys it had before (a restart that loads its dump, or a paused server resumed), nothing
cached before the outage may be served: writes and logouts made during the outage could not
bump the version counters or overwrite the auth state.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.faults import (
    GatedSMTPSink,
    RedisServer,
    SMTPServer,
    mail_env,
    serve_logs,
    start_worker,
    wait_for,
)
from tests.support.processes import cli_env, run_cli, serve, stop_process
from tests.support.values import PASSWORD

CLOSE = {"Connection": "close"}  # a new connection per request: both workers answer


@pytest.fixture
def redis_server(tmp_path: Path) -> Any:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.close()


async def _statuses(client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str],
                    n: int = 8, **kwargs: Any) -> set[int]:
    responses = await asyncio.gather(*(
        client.request(method, path, headers={**headers, **CLOSE}, **kwargs) for _ in range(n)))
    return {r.status_code for r in responses}


async def _mine(client: httpx.AsyncClient, account: Any, n: int = 8) -> set[tuple[int, str]]:
    responses = await asyncio.gather(*(
        client.get("/tasks/mine", headers={**account.headers, **CLOSE}) for _ in range(n)))
    assert {r.status_code for r in responses} == {200}
    return {(t["id"], t["status"]) for r in responses for t in r.json()}


@pytest.mark.parametrize("outage", ["restart", "pause"])
async def test_redis_stopped_mid_traffic(outage: str, tmp_path: Path, database_url: str, redis_server: RedisServer, make_user) -> None:  # type: ignore[no-untyped-def]
    manager = await make_user("manager")
    staff = await make_user("employee")
    employees = [await make_user("employee") for _ in range(4)]
    limited = await make_user("employee")
    gone = await make_user("employee")  # logs out before the outage
    late = await make_user("employee")  # logs out during it
    env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=database_url,
                  TASKAPI_REDIS_URL=redis_server.url, TASKAPI_RATE_LIMIT_LOGIN="10000/minute",
                  TASKAPI_RATE_LIMIT_DEFAULT="60/minute",
                  # Logins wait for their password check however slow a loaded machine makes
                  # it, rather than 503 busy (test_hardening_login.py tests that).
                  TASKAPI_PASSWORD_QUEUE_WAIT="60")
    with serve(env, "--workers", "2") as base:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            tasks: dict[int, int] = {}
            for user in employees:
                created = await client.post("/tasks", headers=manager.headers, json={
                    "title": f"for {user.id}", "assigned_user_id": user.id})
                assert created.status_code == 201
                tasks[user.id] = created.json()["id"]
            # Cached before the outage: the lists, each task, and the auth state of `late`.
            for user in employees:
                assert await _mine(client, user, 4) == {(tasks[user.id], "pending")}
                assert await _statuses(client, "GET", f"/task/{tasks[user.id]}",
                                       user.headers, 2) == {200}
            assert await _statuses(client, "GET", "/me", late.headers, 4) == {200}
            assert (await client.post("/logout", headers=gone.headers)).status_code == 204
            assert await _statuses(client, "GET", "/me", gone.headers) == {401}

            async def limited_me() -> int:
                return (await client.get("/me", headers=limited.headers)).status_code

            for _ in range(200):  # until the window is full (it may roll over once)
                if await limited_me() == 429:
                    break
            assert await limited_me() == 429

            if outage == "restart":
                redis_server.stop()
            else:
                assert redis_server.process is not None
                os.kill(redis_server.process.pid, signal.SIGSTOP)
            try:
                ready = await client.get("/readyz")
                assert ready.status_code == 503
                assert ready.json()["checks"] == {"database": "ok", "redis": "down"}

                # Concurrent reads, writes and logins, all answered from the database.
                async def traffic(user: Any, status: str) -> list[int]:
                    task = tasks[user.id]
                    calls = [
                        client.get("/tasks/mine", headers={**user.headers, **CLOSE}),
                        client.put(f"/task/{task}/status", headers={**user.headers, **CLOSE},
                                   json={"status": status}),
                        client.get(f"/task/{task}", headers={**user.headers, **CLOSE}),
                        client.post("/login", headers=CLOSE, json={"email": user.email,
                                                                   "password": PASSWORD}),
                    ]
                    return [r.status_code for r in await asyncio.gather(*calls)]

                for status in ("in-progress", "pending", "in-progress", "completed"):
                    rounds = await asyncio.gather(*(traffic(u, status) for u in employees))
                    assert {code for codes in rounds for code in codes} == {200}
                for user in employees:  # the writes are visible at once
                    assert await _mine(client, user, 4) == {(tasks[user.id], "completed")}

                # Rate limiting fails open (documented), revocation does not.
                assert [await limited_me() for _ in range(5)] == [200] * 5
                assert await _statuses(client, "GET", "/me", gone.headers) == {401}
                assert await _statuses(client, "GET", "/me", staff.headers) == {200}
                assert (await client.post("/logout", headers=late.headers)).status_code == 204
                assert await _statuses(client, "GET", "/me", late.headers) == {401}
            finally:
                if outage == "restart":
                    redis_server.start()
                else:
                    assert redis_server.process is not None
                    os.kill(redis_server.process.pid, signal.SIGCONT)

            async def ready_again() -> bool:
                return (await client.get("/readyz")).status_code == 200

            deadline = asyncio.get_running_loop().time() + 30
            while not await ready_again():
                assert asyncio.get_running_loop().time() < deadline, "never ready again"
                await asyncio.sleep(0.1)
            assert redis_server.client().dbsize() > 0  # the old keys came back

            def every_worker_back() -> bool:
                # Each worker that saw the outage probes every 0.5 s; until its probe moves
                # the epoch on it answers from the database, which would not test the cache.
                log = serve_logs(tmp_path)
                return log.count("Redis back: cache epoch moved on") >= log.count(
                    "Redis unavailable: rate limiting fails open") > 0

            wait_for(every_worker_back, "every worker to use Redis again", timeout=10)

            # Nothing cached before the outage is served after it.
            for user in employees:
                assert await _mine(client, user, 8) == {(tasks[user.id], "completed")}
                task = await client.get(f"/task/{tasks[user.id]}", headers=user.headers)
                assert task.json()["status"] == "completed"
            assert await _statuses(client, "GET", "/me", late.headers) == {401}
            assert await _statuses(client, "GET", "/me", gone.headers) == {401}
            # Caching works again: a second read is a hit with the same ETag.
            first = await client.get("/tasks/mine", headers=employees[0].headers)
            again = await client.get("/tasks/mine", headers={
                **employees[0].headers, "If-None-Match": first.headers["ETag"]})
            assert again.status_code == 304

    log = serve_logs(tmp_path)
    # Said once per outage and worker, not once per request.
    assert 1 <= log.count("Redis unavailable: rate limiting fails open") <= 2
    assert 1 <= log.count("Redis back: cache epoch moved on") <= 2
    assert "Traceback" not in log


async def test_worker_outlives_a_redis_restart(tmp_path: Path, database_url: str, redis_server: RedisServer, db) -> None:  # type: ignore[no-untyped-def]
    """arq's worker ends when its Redis goes away; `taskapi worker` starts a new one when
    Redis answers again, so mail queued during the outage goes out, once, without an
    operator. SIGTERM while it waits for Redis ends it at once, cleanly."""
    sink = GatedSMTPSink()
    smtp = SMTPServer(sink)
    smtp.start()
    env = mail_env(tmp_path, database_url, redis_server.url, smtp.port)
    log_path = tmp_path / "worker.log"
    worker = start_worker(env, log_path)

    def register(base: str, name: str) -> None:
        response = httpx.post(base + "/register", json={
            "username": name, "email": f"{name}@example.test", "password": PASSWORD})
        assert response.status_code == 202, response.text

    def received() -> int:
        return len(sink.messages)

    try:
        with serve(env, "--no-worker") as base:
            register(base, "before")
            wait_for(lambda: received() == 1, "the first welcome email")
            redis_server.stop()
            register(base, "during")  # recorded in the outbox; Redis cannot take the job
            wait_for(lambda: "Redis is unreachable" in log_path.read_text(),
                     "the worker to notice the outage")
            await asyncio.sleep(1)
            assert worker.poll() is None, log_path.read_text()
            redis_server.start()
            wait_for(lambda: received() == 2, "the email queued during the outage", timeout=40)
            register(base, "after")
            wait_for(lambda: received() == 3, "an email after the outage")
        assert Counter(m["To"] for m in sink.messages) == Counter(
            f"{name}@example.test" for name in ("before", "during", "after"))
        log = log_path.read_text()
        assert log.count("Redis is unreachable") == 1 and "Redis answers again" in log
        assert "Traceback" not in log, log

        # Redis away again, then SIGTERM while the worker waits for it: a clean exit.
        redis_server.stop()
        wait_for(lambda: log_path.read_text().count("waiting for Redis") == 2,
                 "the worker to wait for Redis again")
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 10) == 0
        assert received() == 3
    finally:
        stop_process(worker)
        smtp.stop()


def test_worker_refused_by_redis_says_so_in_one_line(tmp_path: Path, database_url: str) -> None:
    """Wrong credentials are a setting to fix, not an outage to wait out."""
    server = RedisServer(tmp_path / "redis", password="not-in-the-url")
    server.start()
    try:
        env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=database_url,
                      TASKAPI_REDIS_URL=server.url)
        result = run_cli("worker", env=env, timeout=30)
    finally:
        server.close()
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("taskapi: Redis refused the worker") and "TASKAPI_REDIS_URL" in last
