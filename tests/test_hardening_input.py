"""Hardening of input (security issue #14, findings 2, 7 and 8).

- A body with absurd numbers of keys is refused before validation (413), and a 422 lists only
  its first 20 errors (each cut short) and their count: a small request can never
  buy a large response or seconds of CPU.
- Every decoded cursor and every datetime is checked against the type and range its query
  needs: a forged cursor or a datetime that overflows when converted to UTC is a 422, never
  a 500, and the extremes that are let through work on SQLite and PostgreSQL alike.
- A parameter given twice is a 422 naming it, on every list route, cache warm or cold: the
  cache key and the parser can never read different things.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any
from urllib.parse import quote

import pytest

from taskapi.http.cached_reads import CachedReads

PROBLEM = "application/problem+json"


def cursor_of(value: Any) -> str:
    """A cursor as this API encodes them (base64url of JSON, unpadded), holding `value`."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.fixture
async def team(make_user) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {role: await make_user(role) for role in ("admin", "manager", "employee")}


async def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    body = await response.get_data(as_text=True)
    assert response.status_code == status, body[:500]
    assert response.headers["Content-Type"] == PROBLEM
    problem: dict[str, Any] = json.loads(body)
    assert problem["code"] == code, problem
    return problem


# --- finding 2: 422 amplification ---------------------------------------------------------

async def test_a_body_with_60000_unknown_keys_is_refused_small(client) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({f"k{n}": 0 for n in range(60_000)}).encode()
    assert len(body) > 600_000
    response = await client.post("/login", data=body,
                                 headers={"Content-Type": "application/json"})
    text = await response.get_data(as_text=True)
    assert len(text) < 2_000, f"{response.status_code}: {len(text)} bytes"
    problem = await _problem(response, 413, "too_many_keys")
    assert "errors" not in problem


@pytest.mark.parametrize("body", [
    [{}] * 5_000,                                    # many objects, few keys
    {"title": "t", "description": [{f"k{n}": 0 for n in range(50)}] * 30},  # in total
    {"title": "t", **{f"k{n}": n for n in range(200)}},  # one object over its own limit
])
async def test_absurd_key_counts_are_refused_before_validation(client, team, body) -> None:  # type: ignore[no-untyped-def]
    response = await client.post("/tasks", json=body, headers=team["manager"].headers)
    await _problem(response, 413, "too_many_keys")
    listed = await client.get("/tasks", headers=team["manager"].headers)
    assert await listed.get_json() == []  # nothing was created


async def test_a_422_lists_the_first_errors_and_counts_them_all(client, team) -> None:  # type: ignore[no-untyped-def]
    body = {"title": "t", **{f"unknown{n}": n for n in range(60)}}  # under the key limits
    response = await client.post("/tasks", json=body, headers=team["manager"].headers)
    problem = await _problem(response, 422, "validation_error")
    assert problem["error_count"] == 60
    assert len(problem["errors"]) == 20
    assert problem["errors"][0]["loc"] == ["unknown0"]


async def test_a_422_for_a_long_query_string_stays_small(client, team) -> None:  # type: ignore[no-untyped-def]
    query = "&".join(f"p{n}=" for n in range(1_000))  # ~6 KB, under the query limit
    response = await client.get(f"/tasks?{query}", headers=team["manager"].headers)
    problem = await _problem(response, 422, "validation_error")
    assert problem["error_count"] == 1_000 and len(problem["errors"]) == 20
    assert len(await response.get_data()) < 4_000


async def test_a_422_does_not_echo_a_huge_key(client) -> None:  # type: ignore[no-untyped-def]
    response = await client.post("/login", json={"k" * 500_000: 1, "email": "a@example.test",
                                                 "password": "whatever1"})
    problem = await _problem(response, 422, "validation_error")
    assert len(await response.get_data()) < 2_000
    assert problem["errors"][0]["loc"][0].startswith("kkkk")


# --- finding 7: forged cursors and edge datetimes -----------------------------------------

def raw_cursor(text: str) -> str:
    """A cursor holding this exact JSON text (json.dumps cannot write `1e999`)."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


BIG = 10**25
TASK_CURSORS = [
    ("created_at", cursor_of(["2000-01-01T00:00:00", 1])),  # naive: never handed out
    ("-created_at", cursor_of(["2000-01-01T00:00:00", 0])),
    ("deadline", cursor_of(["2000-01-01T00:00:00", 1])),
    ("created_at", cursor_of(["9999-12-31T23:59:59-01:00", 1])),  # overflows in UTC
    ("-deadline", cursor_of(["0001-01-01T00:00:00+01:00", 1])),
    ("created_at", cursor_of(["2030-01-01T00:00:00+00:00", BIG])),
    ("created_at", cursor_of(["2030-01-01T00:00:00+00:00", 0])),
    ("created_at", cursor_of(["2030-01-01T00:00:00+00:00", True])),
    ("created_at", cursor_of(["2030-01-01T00:00:00+00:00", "1"])),
    ("created_at", cursor_of([1700000000, 1])),
    ("created_at", raw_cursor("[1e999,1]")),
    ("status", raw_cursor("[1e999,1]")),
    ("status", cursor_of([BIG, 1])),
    ("status", cursor_of([1, BIG])),
    ("status", cursor_of([True, 1])),
    ("status", cursor_of([1.5, 1])),
    ("status", cursor_of(["1", 1])),
    ("status", cursor_of([-1, 1])),
    ("status", cursor_of([None, 1])),
    ("status", cursor_of([[], {}])),
    ("created_at", "AAAA"),  # base64 of three NUL bytes
    ("created_at", "_-_-"),  # base64 of bytes that are not UTF-8
    ("created_at", "!!!!"),
]
USER_CURSORS = [cursor_of([True]), cursor_of([BIG]), cursor_of([0]), cursor_of([-5]),
                cursor_of([1.0]), cursor_of(["1"]), raw_cursor("[1e999]"), cursor_of([None]),
                cursor_of([[1]]), "AAAA", "_-_-"]


@pytest.mark.parametrize("path, role", [("/tasks", "manager"), ("/tasks/mine", "employee")])
@pytest.mark.parametrize("sort, cursor", TASK_CURSORS)
async def test_a_forged_task_cursor_is_a_422(client, team, path, role, sort, cursor) -> None:  # type: ignore[no-untyped-def]
    response = await client.get(f"{path}?sort={sort}&cursor={cursor}",
                                headers=team[role].headers)
    await _problem(response, 422, "invalid_cursor")


@pytest.mark.parametrize("path", ["/users", "/users/pending"])
@pytest.mark.parametrize("cursor", USER_CURSORS)
async def test_a_forged_user_cursor_is_a_422(client, team, path, cursor) -> None:  # type: ignore[no-untyped-def]
    response = await client.get(f"{path}?cursor={cursor}", headers=team["admin"].headers)
    await _problem(response, 422, "invalid_cursor")


OVERFLOWING = ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00",
               "9999-12-31T23:30:00-00:31", "0001-01-01T00:00:00.5+00:00:01"]


@pytest.mark.parametrize("value", OVERFLOWING)
@pytest.mark.parametrize("name", ["due_after", "due_before"])
@pytest.mark.parametrize("path, role", [("/tasks", "manager"), ("/tasks/mine", "employee")])
async def test_a_filter_datetime_out_of_range_in_utc_is_a_422(client, team, path, role, name,  # type: ignore[no-untyped-def]
                                                              value) -> None:
    response = await client.get(f"{path}?{name}={quote(value)}", headers=team[role].headers)
    problem = await _problem(response, 422, "validation_error")
    assert problem["errors"][0]["loc"] == [name]


@pytest.mark.parametrize("value", [*OVERFLOWING, 1e20, -1e20, "NaN"])
async def test_a_deadline_out_of_range_is_a_422_and_changes_nothing(client, team, value) -> None:  # type: ignore[no-untyped-def]
    headers = team["manager"].headers
    created = await client.post("/tasks", json={"title": "keep"}, headers=headers)
    task = await created.get_json()
    response = await client.post("/tasks", json={"title": "t", "deadline": value},
                                 headers=headers)
    await _problem(response, 422, "validation_error")
    update = await client.put(f"/task/{task['id']}", json={"deadline": value}, headers=headers)
    await _problem(update, 422, "validation_error")
    after = await (await client.get(f"/task/{task['id']}", headers=headers)).get_json()
    assert after == task
    assert len(await (await client.get("/tasks", headers=headers)).get_json()) == 1


EXTREMES = {
    "0001-01-01": "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z": "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00-14:00": "0001-01-01T14:00:00Z",
    "9999-12-31T09:59:59.999999+14:00": "9999-12-30T19:59:59.999999Z",
    "9999-12-31T22:59:59-01:00": "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999999Z": "9999-12-31T23:59:59.999999Z",
}


async def test_the_extreme_datetimes_let_through_work_end_to_end(client, team) -> None:  # type: ignore[no-untyped-def]
    """What validation accepts, the database stores, sorts, filters and pages through
    (SQLite here; PostgreSQL with TASKAPI_TEST_DATABASE_URL)."""
    headers, employee = team["manager"].headers, team["employee"]
    for sent, stored in EXTREMES.items():
        response = await client.post("/tasks", headers=headers, json={
            "title": sent, "deadline": sent, "assigned_user_id": employee.id})
        assert response.status_code == 201, await response.get_data()
        assert (await response.get_json())["deadline"] == stored
    await client.post("/tasks", headers=headers, json={"title": "none",
                                                       "assigned_user_id": employee.id})
    ordered = sorted(EXTREMES.values(), key=lambda d: datetime.fromisoformat(d))
    for path, who in (("/tasks", headers), ("/tasks/mine", employee.headers)):
        for sort, expected in (("deadline", [*ordered, None]),
                               ("-deadline", [None, *reversed(ordered)])):
            seen, url = [], f"{path}?sort={sort}&limit=1"
            while url:
                page = await client.get(url, headers=who)
                assert page.status_code == 200, await page.get_data()
                seen += [task["deadline"] for task in await page.get_json()]
                url = page.headers.get("Link", "")[1:].partition(">")[0]
            # NULL sorts after every real deadline, even the latest instant (a tie: by id).
            assert seen == expected, (path, sort)
        for name, value, count in (("due_after", "0001-01-01T00:00:00Z", 6),
                                   ("due_after", "9999-12-31T23:59:59.999999Z", 1),
                                   ("due_before", "0001-01-01T00:00:00.000001Z", 2),
                                   ("due_before", "9999-12-31T23:59:59.999999Z", 5)):
            listed = await client.get(f"{path}?{name}={quote(value)}", headers=who)
            assert listed.status_code == 200, await listed.get_data()
            assert len(await listed.get_json()) == count, (path, name, value)


# --- finding 8: repeated parameters and the cache key -------------------------------------

def _layer(app: Any) -> CachedReads:
    layer = app.asgi_app
    assert isinstance(layer, CachedReads)
    return layer


async def test_a_repeated_filter_is_a_422_both_orders_cache_warm(app, client, team) -> None:  # type: ignore[no-untyped-def]
    """Before: both orders shared one cache entry while the parser took the first value, so
    one manager was served the list another manager's query had built."""
    layer = _layer(app)
    manager = team["manager"].headers
    for status in ("pending", "in-progress"):
        response = await client.post("/tasks", json={"title": status}, headers=manager)
        task = await response.get_json()
        await client.put(f"/task/{task['id']}/status", json={"status": status}, headers=manager)
    for query in ("status=pending", "status=in-progress"):
        for _ in range(2):  # a miss, then a hit from the fast path
            warm = await client.get(f"/tasks?{query}", headers=manager)
            assert warm.status_code == 200 and len(await warm.get_json()) == 1
    served = layer.served
    assert served >= 2
    for _ in range(2):  # the second round would be a hit if the first had been stored
        for query in ("status=pending&status=in-progress", "status=in-progress&status=pending",
                      "status=pending&status=pending"):
            response = await client.get(f"/tasks?{query}", headers=manager)
            problem = await _problem(response, 422, "repeated_parameter")
            assert "status" in problem["detail"]
            assert problem["errors"] == [{"loc": ["status"], "msg": "given more than once",
                                          "type": "repeated_parameter"}]
    assert layer.served == served  # nothing answered from the cache


@pytest.mark.parametrize("path, role", [("/tasks", "manager"), ("/tasks/mine", "employee"),
                                        ("/api/v1/tasks/mine", "employee"),
                                        ("/users", "manager"), ("/users/pending", "admin")])
@pytest.mark.parametrize("query, name", [
    ("limit=1&limit=2", "limit"),
    ("cursor=&cursor=x", "cursor"),
    ("sort=status&limit=5&sort=created_at", "sort"),
    ("lim%69t=1&limit=2", "limit"),  # the same name, spelled differently
    ("unknown=1&unknown=2", "unknown"),
])
async def test_a_repeated_parameter_is_a_422_on_every_list(client, team, path, role, query,  # type: ignore[no-untyped-def]
                                                           name) -> None:
    for _ in range(2):
        response = await client.get(f"{path}?{query}", headers=team[role].headers)
        problem = await _problem(response, 422, "repeated_parameter")
        assert f"'{name}'" in problem["detail"]


async def test_an_entry_stored_for_a_repeated_query_is_never_served(app, client, team) -> None:  # type: ignore[no-untyped-def]
    """An entry under a repeated query's key, as a version before this fix stored them (an
    older instance sharing Redis during a rolling upgrade): neither the layer before Quart
    nor Quart serves it."""
    from taskapi.core.querystring import canonical, query_pairs
    from taskapi.http.current import EXTENSION_KEY
    from taskapi.models import Role
    from taskapi.schemas.tasks import TaskListQuery
    from taskapi.services import tasks
    from taskapi.services.authstate import Actor

    layer, manager = _layer(app), team["manager"]
    await client.post("/tasks", json={"title": "pending"}, headers=manager.headers)
    state = app.extensions[EXTENSION_KEY]
    query = b"status=in-progress&status=pending"
    planted = await tasks.list_tasks_cached(
        state, Actor(manager.id, Role.MANAGER, "sid"), canonical(query_pairs(query)),
        lambda: TaskListQuery(status="in-progress"), mine=False)
    assert planted.body == "[]"
    for _ in range(2):
        for order in (query, b"status=pending&status=in-progress"):
            response = await client.get(f"/tasks?{order.decode()}", headers=manager.headers)
            await _problem(response, 422, "repeated_parameter")
    assert layer.served == 0
