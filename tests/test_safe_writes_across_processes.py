"""Safe writes on a real `taskapi serve --workers 2`: one Idempotency-Key sent 20 times at
once creates one task; two PUTs with one If-Match give one 200 and one 412; the ETag a write
answers is what every worker's GET answers next (cached reads included)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from taskapi.models import Task
from tests.support.processes import cli_env, serve


def _env(tmp_path: Path, database_url: str, redis_url: str) -> dict[str, str]:
    return cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=database_url,
                   TASKAPI_REDIS_URL=redis_url)


async def _at_once(base: str, calls: list[tuple[str, str, dict[str, str], Any]]) -> list[Any]:
    """Every call on its own connection (so both workers answer), sent together."""
    async def one(method: str, path: str, headers: dict[str, str], body: Any) -> Any:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            return await http.request(method, path, json=body,
                                      headers={**headers, "Connection": "close"})

    return await asyncio.gather(*(one(*call) for call in calls))


async def test_twenty_posts_with_one_key_create_one_task(tmp_path: Path, database_url: str, redis_url: str, redis_sync, make_user, db) -> None:  # type: ignore[no-untyped-def]
    manager = await make_user("manager")
    headers = {**manager.headers, "Idempotency-Key": "retry-storm"}
    with serve(_env(tmp_path, database_url, redis_url), "--workers", "2") as base:
        responses = await _at_once(base, [("POST", "/tasks", headers, {"title": "Once"})] * 20)
        async with db.transaction(write=False) as session:
            tasks = list(await session.scalars(select(Task.id)))
        assert len(tasks) == 1
        codes = [r.status_code for r in responses]
        assert set(codes) <= {201, 409}, codes
        created = [r for r in responses if r.status_code == 201]
        assert created and {r.json()["id"] for r in created} == set(tasks)
        assert sum(r.headers.get("Idempotent-Replayed") != "true" for r in created) == 1
        for r in responses:
            if r.status_code == 409:
                assert r.json()["code"] == "idempotency_key_in_use"
        # Later retries (even after Redis lost everything) replay, on either worker.
        redis_sync.flushdb()
        later = await _at_once(base, [("POST", "/tasks", headers, {"title": "Once"})] * 6)
        assert {r.status_code for r in later} == {201}
        assert {r.headers["Idempotent-Replayed"] for r in later} == {"true"}
        async with db.transaction(write=False) as session:
            assert await session.scalar(select(func.count(Task.id))) == 1


async def test_two_puts_with_one_if_match_across_workers(tmp_path: Path, database_url: str, redis_url: str, redis_sync, make_user) -> None:  # type: ignore[no-untyped-def]
    manager, admin = await make_user("manager"), await make_user("admin")
    with serve(_env(tmp_path, database_url, redis_url), "--workers", "2") as base:
        created = httpx.post(base + "/tasks", json={"title": "Shared"}, headers=manager.headers)
        path, etag = f"/task/{created.json()['id']}", created.headers["ETag"]
        for round_ in range(5):
            responses = await _at_once(base, [
                ("PUT", path, {**manager.headers, "If-Match": etag}, {"title": f"m{round_}"}),
                ("PUT", path, {**admin.headers, "If-Match": etag}, {"title": f"a{round_}"}),
            ])
            assert sorted(r.status_code for r in responses) == [200, 412]
            winner = next(r for r in responses if r.status_code == 200)
            etag = winner.headers["ETag"]
            # Every worker (its cached read included) now answers the winner's version.
            reads = await _at_once(base, [("GET", path, manager.headers, None)] * 8)
            assert {r.headers["ETag"] for r in reads} == {etag}
            assert {r.json()["title"] for r in reads} == {winner.json()["title"]}
        history = httpx.get(base + path + "/history", headers=admin.headers).json()
        assert [h["action"] for h in history] == ["created"] + ["updated"] * 5
