"""Revocation, role changes and cache invalidation seen by every worker process of a real
`taskapi serve` (the cached reads are answered by fastpath.py there, before Quart)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.support.processes import cli_env, serve


def _statuses(base: str, method: str, path: str, headers: dict[str, str], n: int = 16) -> set[int]:
    codes = set()
    for _ in range(n):  # a new connection each time, so both workers answer
        response = httpx.request(method, base + path, headers={**headers, "Connection": "close"})
        codes.add(response.status_code)
    return codes


async def test_logout_and_demotion_apply_on_every_worker(tmp_path: Path, database_url: str, redis_url: str, redis_sync, make_user) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user("admin")
    manager = await make_user("manager")
    employee = await make_user("employee")
    env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=database_url,
                  TASKAPI_REDIS_URL=redis_url)
    with serve(env, "--workers", "2") as base:
        assert _statuses(base, "GET", "/me", employee.headers) == {200}
        assert _statuses(base, "GET", "/users", manager.headers) == {200}
        assert _statuses(base, "GET", "/tasks/mine", employee.headers) == {200}
        assert _statuses(base, "GET", "/stats", manager.headers) == {200}

        logout = httpx.post(base + "/logout", headers=employee.headers)
        assert logout.status_code == 204
        assert _statuses(base, "GET", "/me", employee.headers) == {401}
        assert _statuses(base, "GET", "/tasks/mine", employee.headers) == {401}

        demote = httpx.put(base + f"/api/v1/users/{manager.id}", headers=admin.headers,
                           json={"role": "employee"})
        assert demote.status_code == 200
        assert _statuses(base, "GET", "/users", manager.headers) == {403}
        assert _statuses(base, "GET", "/stats", manager.headers) == {403}
        assert _statuses(base, "GET", "/me", manager.headers) == {200}

        # A PUT with a body answered early (401) keeps the keep-alive connection usable.
        with httpx.Client(base_url=base) as http:
            for _ in range(3):
                early = http.put("/me", json={"timezone": "UTC"}, headers=employee.headers)
                assert early.status_code == 401
            assert http.get("/healthz").status_code == 200


async def test_a_write_on_one_worker_is_read_on_every_worker(tmp_path: Path, database_url: str, redis_url: str, redis_sync, make_user) -> None:  # type: ignore[no-untyped-def]
    manager = await make_user("manager")
    employee = await make_user("employee")
    env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=database_url,
                  TASKAPI_REDIS_URL=redis_url)

    def bodies(path: str, who: dict[str, str]) -> list[Any]:
        return [httpx.get(base + path, headers={**who, "Connection": "close"}).json()
                for _ in range(12)]  # new connections: both workers answer, from the cache

    with serve(env, "--workers", "2") as base:
        created = httpx.post(base + "/tasks", headers=manager.headers,
                             json={"title": "first", "assigned_user_id": employee.id}).json()
        task = f"/task/{created['id']}"
        for path, who in (("/tasks/mine", employee.headers), (task, employee.headers),
                          ("/stats", manager.headers)):
            bodies(path, who)  # every worker has read (and cached) the current state
        for status in ("in-progress", "completed", "pending"):
            put = httpx.put(base + task + "/status", headers=employee.headers,
                            json={"status": status})
            assert put.status_code == 200
            assert {t[0]["status"] for t in bodies("/tasks/mine", employee.headers)} == {status}
            assert {t["status"] for t in bodies(task, employee.headers)} == {status}
            stats = bodies("/stats", manager.headers)
            assert {s["completed_tasks"] for s in stats} == {int(status == "completed")}
