"""fastpath.py: cache hits answered before Quart must be the answers Quart would give, and
everything it cannot answer must reach Quart as if the layer were not there."""

from __future__ import annotations

import re
from typing import Any

import pytest

from taskapi.app import create_app
from taskapi.http.cached_reads import CachedReads

# Headers that differ between any two responses, whoever sends them.
VOLATILE = {"date", "x-request-id"}


def _layer(app: Any) -> CachedReads:
    layer = app.asgi_app
    assert isinstance(layer, CachedReads)
    return layer


def _comparable(response: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items() if k.lower() not in VOLATILE}


@pytest.fixture
async def seeded(client, make_user) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    manager, employee, other = (await make_user("manager"), await make_user("employee"),
                                await make_user("employee"))
    ids = []
    for n in range(3):
        response = await client.post("/tasks", headers=manager.headers, json={
            "title": f"task {n}", "assigned_user_id": employee.id})
        ids.append((await response.get_json())["id"])
    return {"manager": manager, "employee": employee, "other": other, "ids": ids}


@pytest.mark.parametrize("who, path", [
    ("employee", "/tasks/mine"),
    ("employee", "/tasks/mine?limit=2&sort=-created_at"),  # a Link header to page 2
    ("employee", "/api/v1/tasks/mine?limit=1&status=pending"),
    ("employee", "/task/{id}"),
    ("employee", "/tasks/{id}"),
    ("manager", "/tasks?limit=2"),
    ("manager", "/task/{id}"),
    ("manager", "/stats"),
])
async def test_a_hit_is_what_quart_answered(app, client, seeded, who, path) -> None:  # type: ignore[no-untyped-def]
    layer = _layer(app)
    path = path.format(id=seeded["ids"][1])
    headers = {**seeded[who].headers, "X-Request-ID": "abc-123"}
    assert (await client.get("/me", headers=headers)).status_code == 200  # auth state cached
    first = await client.get(path, headers=headers)  # a miss: built and stored
    # One task declares its build: its miss too is answered before Quart (the test below
    # compares that answer with Quart's); the lists and /stats are built in Quart.
    built_here = int(re.fullmatch(r"/tasks?/\d+", path) is not None)
    assert first.status_code == 200 and layer.served == built_here
    second = await client.get(path, headers=headers)
    assert layer.served == built_here + 1
    assert second.status_code == 200
    assert await second.get_data() == await first.get_data()
    assert _comparable(second) == _comparable(first)
    assert second.headers["X-Request-ID"] == "abc-123"
    if "limit" in path:
        assert "rel=\"next\"" in second.headers["Link"]

    etag = second.headers["ETag"]
    not_modified = await client.get(path, headers={**headers, "If-None-Match": etag})
    assert not_modified.status_code == 304 and layer.served == built_here + 2
    assert await not_modified.get_data() == b""
    assert not_modified.headers["ETag"] == etag


async def test_a_miss_of_one_task_built_before_quart_is_what_quart_builds(app, client, seeded, redis_sync) -> None:  # type: ignore[no-untyped-def]
    layer = _layer(app)
    employee, other, manager = seeded["employee"], seeded["other"], seeded["manager"]
    task = f"/task/{seeded['ids'][2]}"
    for who in (employee, other, manager):  # auth state cached
        assert (await client.get("/me", headers=who.headers)).status_code == 200
    here = await client.get(task, headers=employee.headers)  # nothing cached yet: built here
    assert here.status_code == 200 and layer.served == 1
    for key in redis_sync.scan_iter("c:task:*"):
        redis_sync.delete(key)
    # A request the layer leaves to Quart (it never answers one with a body header).
    quart = await client.get(task, headers={**employee.headers, "Content-Length": "0"})
    assert quart.status_code == 200 and layer.served == 1
    assert await here.get_data() == await quart.get_data()
    assert _comparable(here) == _comparable(quart)

    # Someone else's task, an unknown one: built or not, Quart answers the 404.
    for key in redis_sync.scan_iter("c:task:*"):
        redis_sync.delete(key)
    denied = await client.get(task, headers=other.headers)
    assert denied.status_code == 404 and (await denied.get_json())["code"] == "not_found"
    missing = await client.get("/task/999999", headers=manager.headers)
    assert missing.status_code == 404 and (await missing.get_json())["code"] == "not_found"
    assert layer.served == 1
    assert (await client.get(task, headers=manager.headers)).status_code == 200
    assert layer.served == 2  # the entry built for `other` serves the manager


async def test_what_it_cannot_answer_quart_does(app, client, seeded, make_settings) -> None:  # type: ignore[no-untyped-def]
    layer = _layer(app)
    employee, other, manager = seeded["employee"], seeded["other"], seeded["manager"]
    task = f"/task/{seeded['ids'][0]}"
    for who in (employee, manager, other):  # fill caches and auth state
        await client.get(task, headers=who.headers)
        await client.get("/stats", headers=who.headers)
    await client.get("/stats", headers=manager.headers)
    served = layer.served

    # someone else's cached task: 404, cached stats for an employee: 403
    assert (await client.get(task, headers=other.headers)).status_code == 404
    assert (await client.get("/stats", headers=employee.headers)).status_code == 403
    # no token, a bad token, a refresh token in place of an access token
    assert (await client.get(task)).status_code == 401
    assert (await client.get(task, headers={"Authorization": "Bearer x.y.z"})).status_code == 401
    refresh = {"Authorization": f"Bearer {employee.refresh}"}
    assert (await client.get(task, headers=refresh)).status_code == 401
    assert layer.served == served

    # a revoked session is refused at once, the entry still being in the cache
    assert (await client.post("/logout", headers=employee.headers)).status_code in (200, 204)
    response = await client.get(task, headers=employee.headers)
    assert response.status_code == 401
    assert (await response.get_json())["code"] == "token_revoked"
    assert layer.served == served


async def test_each_request_is_counted_once(make_settings, make_user, redis_sync) -> None:  # type: ignore[no-untyped-def]
    app = create_app(make_settings(rate_limit_default="4/minute"))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        employee = await make_user("employee")
        statuses = [(await client.get("/tasks/mine", headers=employee.headers)).status_code
                    for _ in range(6)]
        assert _layer(app).served == 3  # the first was a miss: Quart, on the same count
    assert statuses == [200, 200, 200, 200, 429, 429]


async def test_a_role_change_applies_to_the_next_hit(client, app, seeded, make_user) -> None:  # type: ignore[no-untyped-def]
    admin, manager = await make_user("admin"), seeded["manager"]
    for _ in range(2):
        assert (await client.get("/stats", headers=manager.headers)).status_code == 200
    served = _layer(app).served
    response = await client.put(f"/users/{manager.id}", headers=admin.headers,
                                json={"role": "employee"})
    assert response.status_code == 200, await response.get_data()
    assert (await client.get("/stats", headers=manager.headers)).status_code == 403
    assert _layer(app).served == served


async def test_cache_ttl_zero_reads_the_database_every_time(make_settings, make_user, redis_sync) -> None:  # type: ignore[no-untyped-def]
    app = create_app(make_settings(cache_ttl=0))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        employee = await make_user("employee")
        for _ in range(3):
            response = await client.get("/tasks/mine", headers=employee.headers)
            assert response.status_code == 200 and "ETag" in response.headers
        assert _layer(app).served == 0
    assert not [key for key in redis_sync.scan_iter("c:*")]  # nothing stored
