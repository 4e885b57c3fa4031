"""Idempotency-Key on creates: replay, 422 for another payload, 409 in flight, 400 too long,
per-caller scope, survives a Redis flush, pruned after IDEMPOTENCY_TTL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, select, update

from taskapi.models import IdempotencyKey, ReportRequest, Task, TaskComment, User, utcnow
from taskapi.services.idempotency import prune


async def _count(db, model) -> int:  # type: ignore[no-untyped-def]
    async with db.transaction(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_same_key_replays_the_first_answer(client, make_user, db, redis_sync) -> None:  # type: ignore[no-untyped-def]
    manager = await make_user("manager")
    headers = {**manager.headers, "Idempotency-Key": "create-1"}
    first = await client.post("/tasks", json={"title": "Once"}, headers=headers)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    task = await first.get_json()
    # The task changes meanwhile, and Redis loses everything: the first answer still replays.
    await client.put(f"/task/{task['id']}", json={"title": "Changed"}, headers=manager.headers)
    redis_sync.flushdb()
    again = await client.post("/api/v1/tasks", json={"title": "Once"}, headers=headers)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await again.get_json() == task
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["ETag"] == first.headers["ETag"]
    assert await _count(db, Task) == 1
    # Another payload with the same key: 422, nothing created.
    other = await client.post("/tasks", json={"title": "Twice"}, headers=headers)
    assert other.status_code == 422
    assert (await other.get_json())["code"] == "idempotency_key_reused"
    assert await _count(db, Task) == 1
    # Another caller's key of the same name is their own.
    admin = await make_user("admin")
    theirs = await client.post("/tasks", json={"title": "Once"},
                               headers={**admin.headers, "Idempotency-Key": "create-1"})
    assert theirs.status_code == 201 and "Idempotent-Replayed" not in theirs.headers
    assert await _count(db, Task) == 2


async def test_key_too_long_is_400_and_changes_nothing(client, make_user, db) -> None:  # type: ignore[no-untyped-def]
    manager = await make_user("manager")
    for key, status in (("k" * 256, 400), ("k" * 255, 201)):
        response = await client.post("/tasks", json={"title": "x"},
                                     headers={**manager.headers, "Idempotency-Key": key})
        assert response.status_code == status
    assert await _count(db, Task) == 1


async def test_comments_reports_and_register_replay(client, make_user, db) -> None:  # type: ignore[no-untyped-def]
    manager = await make_user("manager")
    task = await (await client.post("/tasks", json={"title": "t"},
                                    headers=manager.headers)).get_json()
    calls = [
        (f"/task/{task['id']}/comments", {"body": "hello"}, manager.headers, TaskComment, 201),
        ("/reports", {"period_days": 3}, manager.headers, ReportRequest, 202),
        ("/register", {"username": "newbie", "email": "newbie@example.test",
                       "password": "long enough password"}, {}, User, 202),
    ]
    for path, body, headers, model, status in calls:
        before = await _count(db, model)
        keyed = {**headers, "Idempotency-Key": f"key-for-{path}"}
        first = await client.post(path, json=body, headers=keyed)
        assert first.status_code == status, await first.get_data()
        second = await client.post(path, json=body, headers=keyed)
        assert second.status_code == status
        assert second.headers["Idempotent-Replayed"] == "true"
        assert await second.get_json() == await first.get_json()
        assert await _count(db, model) == before + 1, path


async def test_concurrent_duplicates_create_once(client, make_user, db) -> None:  # type: ignore[no-untyped-def]
    manager = await make_user("manager")
    headers = {**manager.headers, "Idempotency-Key": "burst"}
    responses = await asyncio.gather(*(
        client.post("/tasks", json={"title": "Burst"}, headers=headers) for _ in range(10)))
    assert await _count(db, Task) == 1
    created = [r for r in responses if r.status_code == 201]
    assert all(r.status_code in (201, 409) for r in responses)
    bodies = {(await r.get_data()) for r in created}
    assert len(bodies) == 1
    assert sum("Idempotent-Replayed" not in r.headers for r in created) == 1


async def test_worker_prunes_expired_keys(client, make_user, db, settings) -> None:  # type: ignore[no-untyped-def]
    manager = await make_user("manager")
    headers = {**manager.headers, "Idempotency-Key": "old"}
    assert (await client.post("/tasks", json={"title": "a"}, headers=headers)).status_code == 201
    async with db.transaction() as session:
        await session.execute(update(IdempotencyKey).values(
            created_at=utcnow() - timedelta(seconds=settings.idempotency_ttl + 5)))
    # Expired: the key is free again (a new create), before and after the prune.
    again = await client.post("/tasks", json={"title": "b"}, headers=headers)
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    async with db.transaction() as session:
        await session.execute(update(IdempotencyKey).values(
            created_at=utcnow() - timedelta(seconds=settings.idempotency_ttl + 5)))
    assert await prune(db, settings.idempotency_ttl) == 1
    assert await _count(db, IdempotencyKey) == 0
