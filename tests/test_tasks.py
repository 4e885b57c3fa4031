"""Tasks: RBAC, validation, filters, keyset pagination, caching, ETags, concurrency."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from taskapi.app import create_app
from taskapi.models import Task
from tests.support.ports import free_port

PROBLEM = "application/problem+json"


@pytest.fixture
async def team(make_user) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {
        "admin": await make_user("admin"),
        "manager": await make_user("manager"),
        "employee": await make_user("employee"),
        "other": await make_user("employee"),
    }


async def _create(client, who, **fields: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    body = {"title": "Write report", **fields}
    response = await client.post("/tasks", json=body, headers=who.headers)
    assert response.status_code == 201, await response.get_data()
    return await response.get_json()  # type: ignore[no-any-return]


# --- create / read / update -----------------------------------------------------------------

async def test_create_returns_201_location_and_utc_fields(client, team, redis_sync) -> None:  # type: ignore[no-untyped-def]
    response = await client.post("/tasks", headers=team["manager"].headers, json={
        "title": "  Ship it  ", "description": "all of it", "deadline": "2030-01-15",
        "assigned_user_id": team["employee"].id})
    assert response.status_code == 201
    task = await response.get_json()
    assert response.headers["Location"] == f"/task/{task['id']}"
    assert task["title"] == "Ship it" and task["status"] == "pending"
    assert task["deadline"] == "2030-01-15T00:00:00Z"
    assert task["created_by"] == team["manager"].id and task["completed_at"] is None
    assert redis_sync.exists(f"arq:job:email:assign:{task['id']}:{team['employee'].id}:1")
    with_tz = await _create(client, team["admin"], deadline="2030-01-15T17:00:00+01:00")
    assert with_tz["deadline"] == "2030-01-15T16:00:00Z"


@pytest.mark.parametrize("body", [
    {"title": ""},
    {"title": "x" * 201},
    {"title": "ok", "description": "x" * 10_001},
    {"title": "ok", "deadline": "next tuesday"},
    {"title": "ok", "status": "completed"},
    {"title": "ok", "created_by": 1},
    {"description": "no title"},
], ids=["empty-title", "long-title", "long-description", "bad-deadline", "status", "created_by",
        "missing-title"])
async def test_invalid_create_is_422_and_creates_nothing(client, team, db, body) -> None:  # type: ignore[no-untyped-def]
    response = await client.post("/tasks", json=body, headers=team["manager"].headers)
    assert response.status_code == 422 and response.content_type == PROBLEM
    async with db.transaction(write=False) as session:
        assert (await session.scalars(select(Task))).all() == []


async def test_assignee_must_be_an_approved_user(client, team, make_user, db) -> None:  # type: ignore[no-untyped-def]
    pending = await make_user("employee", approved=False)
    for user_id in (pending.id, 999_999):
        response = await client.post("/tasks", headers=team["manager"].headers,
                                     json={"title": "t", "assigned_user_id": user_id})
        assert response.status_code == 422
    task = await _create(client, team["manager"])
    response = await client.put(f"/task/{task['id']}/assign", headers=team["manager"].headers,
                                json={"user_id": pending.id})
    assert response.status_code == 422
    async with db.transaction(write=False) as session:
        assert len((await session.scalars(select(Task))).all()) == 1


async def test_partial_update_changes_only_sent_fields(client, team) -> None:  # type: ignore[no-untyped-def]
    task = await _create(client, team["manager"], description="keep me", deadline="2030-01-01")
    response = await client.put(f"/tasks/{task['id']}", headers=team["manager"].headers,
                                json={"title": "New title"})
    updated = await response.get_json()
    assert updated["title"] == "New title" and updated["description"] == "keep me"
    assert updated["deadline"] == "2030-01-01T00:00:00Z"
    cleared = await client.put(f"/task/{task['id']}", headers=team["manager"].headers,
                               json={"deadline": None})
    assert (await cleared.get_json())["deadline"] is None
    null_title = await client.put(f"/task/{task['id']}", headers=team["manager"].headers,
                                  json={"title": None})
    assert null_title.status_code == 422


async def test_status_route_changes_only_status(client, team, db) -> None:  # type: ignore[no-untyped-def]
    task = await _create(client, team["manager"], assigned_user_id=team["employee"].id)
    url = f"/task/{task['id']}/status"
    sneaky = await client.put(url, headers=team["employee"].headers, json={
        "status": "completed", "title": "pwned", "assigned_user_id": team["employee"].id,
        "deadline": "2000-01-01"})
    assert sneaky.status_code == 422
    done = await client.put(url, headers=team["employee"].headers, json={"status": "completed"})
    body = await done.get_json()
    assert body["status"] == "completed" and body["completed_at"] is not None
    assert body["title"] == "Write report" and body["deadline"] is None
    reopened = await client.put(url, headers=team["employee"].headers,
                                json={"status": "in-progress"})
    assert (await reopened.get_json())["completed_at"] is None
    bad = await client.put(url, headers=team["employee"].headers, json={"status": "done"})
    assert bad.status_code == 422
    async with db.transaction(write=False) as session:
        row = await session.get(Task, task["id"])
        assert row is not None and row.title == "Write report" and row.status.value == "in-progress"


async def test_reassignment_emails_each_assignment_once(client, team, redis_sync) -> None:  # type: ignore[no-untyped-def]
    task = await _create(client, team["manager"], assigned_user_id=team["employee"].id)
    url = f"/task/{task['id']}/assign"
    await client.put(url, headers=team["manager"].headers, json={"user_id": team["other"].id})
    await client.put(url, headers=team["manager"].headers, json={"user_id": team["other"].id})
    await client.put(url, headers=team["manager"].headers, json={"user_id": team["employee"].id})
    tid, emp, oth = task["id"], team["employee"].id, team["other"].id
    assert {k.decode() for k in redis_sync.scan_iter("arq:job:email:assign:*")} == {
        f"arq:job:email:assign:{tid}:{emp}:1", f"arq:job:email:assign:{tid}:{oth}:2",
        f"arq:job:email:assign:{tid}:{emp}:3"}


# --- visibility (who may call each route: the sweep in tests/test_routes.py) -------------

async def test_employee_never_sees_others_tasks(client, team) -> None:  # type: ignore[no-untyped-def]
    mine = await _create(client, team["manager"], title="mine", assigned_user_id=team["employee"].id)
    theirs = await _create(client, team["manager"], title="theirs", assigned_user_id=team["other"].id)
    emp = team["employee"].headers
    listed = await (await client.get(f"/tasks/mine?assigned_user_id={team['other'].id}",
                                     headers=emp)).get_json()
    assert [t["id"] for t in listed] == [mine["id"]]
    assert (await client.get(f"/task/{theirs['id']}", headers=emp)).status_code == 404
    assert (await client.get(f"/task/{theirs['id']}", headers=emp)).status_code == 404
    assert (await client.get("/tasks", headers=emp)).status_code == 403
    # A cursor forged to start before the other user's rows still only yields own tasks.
    from taskapi.core.pagination import encode_cursor

    forged = encode_cursor(["1970-01-01T00:00:00+00:00", 1])
    page = await (await client.get(f"/tasks/mine?cursor={forged}", headers=emp)).get_json()
    assert [t["id"] for t in page] == [mine["id"]]


# --- lists ----------------------------------------------------------------------------------

async def test_filters(client, team) -> None:  # type: ignore[no-untyped-def]
    mgr = team["manager"]
    a = await _create(client, mgr, title="Alpha report", deadline="2030-01-10",
                      assigned_user_id=team["employee"].id)
    b = await _create(client, mgr, title="Beta", description="needs a REPORT too",
                      deadline="2030-02-10")
    c = await _create(client, mgr, title="Gamma 100%_done")
    await client.put(f"/task/{b['id']}/status", headers=mgr.headers, json={"status": "completed"})

    async def ids(query: str) -> list[int]:
        response = await client.get(f"/tasks?{query}", headers=mgr.headers)
        assert response.status_code == 200, await response.get_data()
        return [t["id"] for t in await response.get_json()]

    assert await ids("status=completed") == [b["id"]]
    assert await ids(f"assigned_user_id={team['employee'].id}") == [a["id"]]
    assert await ids("due_before=2030-02-01") == [a["id"]]
    assert await ids("due_after=2030-02-01T00:00:00Z") == [b["id"]]
    assert await ids("q=report") == [a["id"], b["id"]]
    assert await ids("q=100%25_") == [c["id"]]  # LIKE wildcards are literal
    assert await ids("sort=-created_at") == [c["id"], b["id"], a["id"]]
    assert await ids("sort=deadline") == [a["id"], b["id"], c["id"]]  # no deadline last
    assert await ids("sort=-deadline") == [c["id"], b["id"], a["id"]]
    assert await ids("sort=status") == [a["id"], c["id"], b["id"]]
    for bad in ("status=done", "sort=title", "limit=0", "limit=201", "due_before=soon",
                "cursor=%%%"):
        response = await client.get(f"/tasks?{bad}", headers=mgr.headers)
        assert response.status_code == 422, bad
        assert response.content_type == PROBLEM


@pytest.mark.parametrize("sort", ["created_at", "-created_at", "deadline", "-deadline", "status"])
async def test_cursor_pagination_visits_each_task_once_while_adding(client, team, sort) -> None:  # type: ignore[no-untyped-def]
    mgr = team["manager"]
    base = datetime(2030, 1, 1, tzinfo=UTC)
    for i in range(13):
        deadline = (base + timedelta(days=i % 4)).isoformat() if i % 3 else None
        task = await _create(client, mgr, title=f"t{i}", deadline=deadline)
        if i % 5 == 0:
            await client.put(f"/task/{task['id']}/status", headers=mgr.headers,
                             json={"status": "in-progress"})
    url: str | None = f"/tasks?limit=4&sort={sort}"
    seen: list[int] = []
    pages = 0
    while url:
        response = await client.get(url, headers=mgr.headers)
        assert response.headers["X-Total-Count"] in ("13", "14", "15", "16")
        seen += [t["id"] for t in await response.get_json()]
        link = response.headers.get("Link")
        url = link.split(";")[0].strip("<>") if link else None
        if pages < 3:  # tasks keep arriving while the client pages
            await _create(client, mgr, title=f"late{pages}")
        pages += 1
    assert len(seen) == len(set(seen))
    assert set(range(1, 14)) <= set(seen)


# --- caching --------------------------------------------------------------------------------

async def test_read_after_write_across_two_app_instances(make_settings, redis_sync, team) -> None:  # type: ignore[no-untyped-def]
    """Two app instances (two servers) sharing Redis: a write on one is seen on the other."""
    one, two = create_app(make_settings()), create_app(make_settings())
    async with one.test_app() as app_one, two.test_app() as app_two:
        c1, c2 = app_one.test_client(), app_two.test_client()
        emp, mgr = team["employee"].headers, team["manager"].headers
        for client in (c1, c2):  # both caches warm
            assert await (await client.get("/tasks/mine", headers=emp)).get_json() == []
            await client.get("/tasks", headers=mgr)
            await client.get("/stats", headers=mgr)
        created = await c1.post("/tasks", headers=mgr, json={
            "title": "fresh", "assigned_user_id": team["employee"].id})
        task_id = (await created.get_json())["id"]
        assert [t["id"] for t in await (await c2.get("/tasks/mine", headers=emp)).get_json()] == [task_id]
        assert len(await (await c2.get("/tasks", headers=mgr)).get_json()) == 1
        assert (await (await c2.get("/stats", headers=mgr)).get_json())["total_tasks"] == 1
        await c2.put(f"/task/{task_id}/status", headers=emp, json={"status": "completed"})
        listed = await (await c1.get("/tasks/mine", headers=emp)).get_json()
        assert listed[0]["status"] == "completed"
        stats = await (await c1.get("/stats", headers=mgr)).get_json()
        assert stats["completed_tasks"] == 1
        await c1.put(f"/task/{task_id}/assign", headers=mgr, json={"user_id": team["other"].id})
        assert await (await c2.get("/tasks/mine", headers=emp)).get_json() == []
        other = await (await c2.get("/tasks/mine", headers=team["other"].headers)).get_json()
        assert [t["id"] for t in other] == [task_id]


async def test_cache_is_used_and_versioned(client, team, redis_sync) -> None:  # type: ignore[no-untyped-def]
    emp = team["employee"].headers
    await client.get("/tasks/mine", headers=emp)
    keys = {k.decode() for k in redis_sync.scan_iter("c:mine:*")}
    assert len(keys) == 1
    await client.get("/tasks/mine", headers=emp)
    assert {k.decode() for k in redis_sync.scan_iter("c:mine:*")} == keys  # a hit: no new entry
    # Fresh for CACHE_TTL (60 s), kept as long again for a stale answer (decision 038).
    assert 60 < redis_sync.ttl(next(iter(keys))) <= 120


async def test_etag_and_304(client, team) -> None:  # type: ignore[no-untyped-def]
    mgr = team["manager"].headers
    task = await _create(client, team["manager"])
    for url in ("/tasks", "/tasks/mine", "/stats", f"/task/{task['id']}", "/me"):
        first = await client.get(url, headers=mgr)
        etag = first.headers["ETag"]
        again = await client.get(url, headers={**mgr, "If-None-Match": etag})
        assert again.status_code == 304, url
        assert await again.get_data() == b""
    old = (await client.get("/tasks", headers=mgr)).headers["ETag"]
    await client.put(f"/task/{task['id']}", headers=mgr, json={"title": "changed"})
    changed = await client.get("/tasks", headers={**mgr, "If-None-Match": old})
    assert changed.status_code == 200 and changed.headers["ETag"] != old


async def test_redis_down_reads_and_writes_fall_through(make_settings, redis_sync, team, caplog) -> None:  # type: ignore[no-untyped-def]
    app = create_app(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        mgr, emp = team["manager"].headers, team["employee"].headers
        created = await client.post("/tasks", headers=mgr, json={
            "title": "offline", "assigned_user_id": team["employee"].id})
        assert created.status_code == 201
        task_id = (await created.get_json())["id"]
        for _ in range(3):
            listed = await client.get("/tasks/mine", headers=emp)
            assert listed.status_code == 200
            assert [t["id"] for t in await listed.get_json()] == [task_id]
        status = await client.put(f"/task/{task_id}/status", headers=emp,
                                  json={"status": "completed"})
        assert status.status_code == 200
        assert (await (await client.get("/stats", headers=mgr)).get_json())["completed_tasks"] == 1
    bypass = [r for r in caplog.records if "response cache bypassed" in r.getMessage()]
    assert len(bypass) == 1


# --- stats ----------------------------------------------------------------------------------

async def test_stats_counts(client, team, make_user) -> None:  # type: ignore[no-untyped-def]
    await make_user("employee", approved=False)
    mgr = team["manager"]
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    await _create(client, mgr, deadline=past)  # overdue
    done = await _create(client, mgr, deadline=past)  # completed: not overdue
    await client.put(f"/task/{done['id']}/status", headers=mgr.headers, json={"status": "completed"})
    await _create(client, mgr, deadline="2099-01-01")
    stats = await (await client.get("/stats", headers=mgr.headers)).get_json()
    assert stats == {"total_users": 5, "total_tasks": 3, "completed_tasks": 1,
                     "tasks_by_status": {"pending": 2, "in-progress": 0, "completed": 1},
                     "overdue_tasks": 1, "pending_approvals": 1}


# --- concurrency ----------------------------------------------------------------------------

async def test_40_concurrent_status_updates_all_succeed(client, team, db) -> None:  # type: ignore[no-untyped-def]
    tasks = [await _create(client, team["manager"], title=f"c{i}",
                           assigned_user_id=team["employee"].id) for i in range(40)]
    statuses = ["in-progress", "completed"]

    async def update(i: int, task: dict[str, Any]) -> int:
        response = await client.put(f"/task/{task['id']}/status", headers=team["employee"].headers,
                                    json={"status": statuses[i % 2]})
        return response.status_code

    codes = await asyncio.gather(*(update(i, t) for i, t in enumerate(tasks)))
    assert codes == [200] * 40
    async with db.transaction(write=False) as session:
        rows = {t.id: t.status.value for t in await session.scalars(select(Task))}
    assert [rows[t["id"]] for t in tasks] == [statuses[i % 2] for i in range(40)]


async def test_concurrent_misses_share_one_build(client, team) -> None:  # type: ignore[no-untyped-def]
    """After a write, the requests that miss the same list at once run one query between
    them (each used to run its own: at 1,000 connections that herd cost ten times the CPU)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    emp = team["employee"]
    task = await _create(client, team["manager"], assigned_user_id=emp.id)
    await client.get("/tasks/mine", headers=emp.headers)
    await client.put(f"/task/{task['id']}/status", headers=emp.headers,
                     json={"status": "completed"})  # bumps the list's version
    counts: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        # Each build reads the list's total from the counters once (decision 045).
        if statement.lstrip().upper().startswith("SELECT") and "task_counts" in statement:
            counts.append(statement)

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        responses = await asyncio.gather(*(client.get("/tasks/mine", headers=emp.headers)
                                           for _ in range(20)))
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    bodies = [await r.get_json() for r in responses]
    assert {r.status_code for r in responses} == {200}
    assert all(body == [{**body[0], "status": "completed"}] for body in bodies)
    # One build; a request whose lookup crossed the build's store may run a second.
    assert 1 <= len(counts) <= 2, len(counts)


async def test_a_miss_never_joins_a_build_from_before_a_write(app, client, team, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A build started before a write may answer with the old data, but only to the
    requests that read the old versions: one that starts after the write sees it."""
    from taskapi.http.current import EXTENSION_KEY

    emp = team["employee"]
    task = await _create(client, team["manager"], assigned_user_id=emp.id)
    state = app.extensions[EXTENSION_KEY]
    real_run, read, gate, calls = state.db.run, asyncio.Event(), asyncio.Event(), []

    async def first_read_is_slow(work: Any, **kwargs: Any) -> Any:  # a fault: a slow reply
        calls.append(work)
        result = await real_run(work, **kwargs)
        if len(calls) == 1:
            read.set()
            await gate.wait()  # the data is read; the answer is late
        return result

    monkeypatch.setattr(state.db, "run", first_read_is_slow)
    early = asyncio.ensure_future(client.get("/tasks/mine", headers=emp.headers))
    await asyncio.wait_for(read.wait(), 10)
    changed = await client.put(f"/task/{task['id']}/status", headers=emp.headers,
                               json={"status": "in-progress"})
    assert changed.status_code == 200
    late = await asyncio.wait_for(client.get("/tasks/mine", headers=emp.headers), 10)
    assert [t["status"] for t in await late.get_json()] == ["in-progress"]
    gate.set()
    assert [t["status"] for t in await (await early).get_json()] == ["pending"]
