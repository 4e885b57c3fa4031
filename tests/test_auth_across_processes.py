"""Revocation and role changes seen by every worker process of a real `taskapi serve`."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.helpers import cli_env, serve


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

        logout = httpx.post(base + "/logout", headers=employee.headers)
        assert logout.status_code == 204
        assert _statuses(base, "GET", "/me", employee.headers) == {401}

        demote = httpx.put(base + f"/api/v1/users/{manager.id}", headers=admin.headers,
                           json={"role": "employee"})
        assert demote.status_code == 200
        assert _statuses(base, "GET", "/users", manager.headers) == {403}
        assert _statuses(base, "GET", "/me", manager.headers) == {200}

        # A PUT with a body answered early (401) keeps the keep-alive connection usable.
        with httpx.Client(base_url=base) as http:
            for _ in range(3):
                early = http.put("/me", json={"timezone": "UTC"}, headers=employee.headers)
                assert early.status_code == 401
            assert http.get("/healthz").status_code == 200
