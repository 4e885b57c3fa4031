"""Stale-while-revalidate (core/cache.py, decision 038): past its TTL, an entry whose versions
still match is answered while one build replaces it; a version bump is never answered stale,
in-process and on a real two-worker server at the moment the TTL runs out."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from taskapi.core.cache import CacheSpec, Entry, ResponseCache, bump, cached
from taskapi.core.state import AppState
from taskapi.http.current import EXTENSION_KEY
from tests.support.processes import cli_env, serve


def _state(app: Any) -> AppState:
    state: AppState = app.extensions[EXTENSION_KEY]
    return state


class Builds:
    """A build that counts its runs and can be held until released."""

    def __init__(self) -> None:
        self.runs = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self) -> Entry:
        self.runs += 1
        run = self.runs
        await self.gate.wait()
        return Entry.of(f'{{"build": {run}}}')


async def _lookup_and_serve(cache: ResponseCache, spec: CacheSpec, build: Builds) -> Entry:
    return await cached(cache, spec, build)


async def test_a_stale_entry_is_answered_while_one_build_replaces_it(app_with) -> None:  # type: ignore[no-untyped-def]
    async with app_with(cache_ttl=1) as app:
        cache = _state(app).cache
        spec = CacheSpec("c:test:swr", ["cv:test:swr"])
        build = Builds()
        first = await _lookup_and_serve(cache, spec, build)
        assert first.body == '{"build": 1}' and build.runs == 1
        assert (await _lookup_and_serve(cache, spec, build)).body == first.body  # fresh hit
        assert build.runs == 1

        await asyncio.sleep(1.05)  # the TTL ran out; the entry is kept as long again
        build.gate.clear()  # the rebuild is slow
        answers = await asyncio.gather(*(_lookup_and_serve(cache, spec, build)
                                         for _ in range(20)))
        assert {a.body for a in answers} == {first.body}  # all answered at once, stale
        assert build.runs == 2  # and one rebuild for all of them
        assert cache.refreshing(spec.key, (await cache.get(spec.key, spec.versions)).version
                                or "")
        build.gate.set()
        await asyncio.sleep(0.05)
        fresh = await cache.get(spec.key, spec.versions)
        assert fresh.entry is not None and fresh.entry.body == '{"build": 2}'
        assert not fresh.entry.stale and build.runs == 2


async def test_a_version_bump_is_never_answered_stale(app_with) -> None:  # type: ignore[no-untyped-def]
    async with app_with(cache_ttl=1) as app:
        state = _state(app)
        spec = CacheSpec("c:test:bump", ["cv:test:bump"])
        build = Builds()
        await _lookup_and_serve(state.cache, spec, build)
        await asyncio.sleep(1.05)  # stale
        await bump(state.redis, "cv:test:bump")  # a write
        answer = await _lookup_and_serve(state.cache, spec, build)
        assert answer.body == '{"build": 2}'  # built for the new versions, waited for


async def test_a_failed_rebuild_keeps_the_stale_answer(app_with) -> None:  # type: ignore[no-untyped-def]
    async with app_with(cache_ttl=1) as app:
        cache = _state(app).cache
        spec = CacheSpec("c:test:fail", ["cv:test:fail"])
        await cached(cache, spec, Builds())
        await asyncio.sleep(1.05)

        async def broken() -> Entry:
            raise RuntimeError("database away")

        stale = await cached(cache, spec, broken)
        assert stale.body == '{"build": 1}'
        await asyncio.sleep(0.05)
        assert not cache.flights  # the failed rebuild is gone; the next stale read retries


async def test_the_other_worker_never_answers_a_bumped_entry_as_the_ttl_runs_out(tmp_path: Path, database_url: str, redis_url: str, redis_sync, make_user) -> None:  # type: ignore[no-untyped-def]
    manager = await make_user("manager")
    employee = await make_user("employee")
    env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=database_url,
                  TASKAPI_REDIS_URL=redis_url, TASKAPI_CACHE_TTL="1",
                  TASKAPI_LOG_LEVEL="WARNING",
                  # The read loop below is as fast as the server: a fast machine
                  # would pass the default per-user limit, which is not under test.
                  TASKAPI_RATE_LIMIT_DEFAULT="1000000/minute")
    with serve(env, "--workers", "2") as base:
        created = httpx.post(base + "/tasks", headers=manager.headers,
                             json={"title": "swr", "assigned_user_id": employee.id})
        assert created.status_code == 201
        task = f"/task/{created.json()['id']}"
        statuses = ["in-progress", "completed", "pending", "in-progress", "completed"]
        async with httpx.AsyncClient(base_url=base, headers={"Connection": "close"}) as http:
            for status in statuses:
                # Both workers hold the entry; wait until its TTL is about to run out.
                for _ in range(8):
                    assert (await http.get(task, headers=employee.headers)).status_code == 200
                    assert (await http.get("/tasks/mine",
                                           headers=employee.headers)).status_code == 200
                await asyncio.sleep(0.9)
                write = await http.put(task + "/status", headers=employee.headers,
                                       json={"status": status})
                assert write.status_code == 200
                # Reads on new connections (both workers), across the moment the TTL ends.
                deadline = time.monotonic() + 0.4
                while time.monotonic() < deadline:
                    one, mine = await asyncio.gather(
                        http.get(task, headers=employee.headers),
                        http.get("/tasks/mine", headers=employee.headers))
                    assert one.json()["status"] == status
                    assert mine.json()[0]["status"] == status
