"""A task's story and safe writes: history, If-Match/ETag (412, 428), comments."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from taskapi.app import create_app
from tests.support.worker import run_worker_burst

PROBLEM = "application/problem+json"


@pytest.fixture
async def team(make_user) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {role: await make_user(role.rstrip("2"))
            for role in ("admin", "manager", "employee", "employee2")}


async def _create(client, who, **fields: Any) -> tuple[dict[str, Any], str]:  # type: ignore[no-untyped-def]
    response = await client.post("/tasks", json={"title": "Write report", **fields},
                                 headers=who.headers)
    assert response.status_code == 201, await response.get_data()
    return await response.get_json(), response.headers["ETag"]


async def _history(client, who, task_id: int) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    response = await client.get(f"/task/{task_id}/history", headers=who.headers)
    assert response.status_code == 200, await response.get_data()
    return await response.get_json()  # type: ignore[no-any-return]


# --- history --------------------------------------------------------------------------------

async def test_history_lists_every_change_with_its_actor(client, team) -> None:  # type: ignore[no-untyped-def]
    admin, manager, emp = team["admin"], team["manager"], team["employee"]
    task, _ = await _create(client, manager, description="first")
    tid = task["id"]
    steps = [
        (manager, "put", f"/task/{tid}", {"title": "Renamed", "deadline": "2030-01-15"}),
        (admin, "put", f"/task/{tid}/assign", {"user_id": emp.id}),
        (emp, "put", f"/task/{tid}/status", {"status": "in-progress"}),
        (manager, "put", f"/task/{tid}", {"title": "Renamed"}),  # no change: no entry
        (manager, "put", f"/task/{tid}", {"description": "second", "deadline": None}),
        (emp, "put", f"/task/{tid}/status", {"status": "completed"}),
        (admin, "put", f"/task/{tid}/assign", {"user_id": None}),
    ]
    for who, method, path, body in steps:
        response = await getattr(client, method)(path, json=body, headers=who.headers)
        assert response.status_code == 200, await response.get_data()
    history = await _history(client, admin, tid)
    got = [(h["action"], h["actor_id"], h["changes"]) for h in history]
    assert got[0][0:2] == ("created", manager.id)
    assert got[0][2]["title"] == {"from": None, "to": "Write report"}
    assert got[0][2]["status"] == {"from": None, "to": "pending"}
    assert got[0][2]["description"] == {"from": None, "to": "first"}
    assert "deadline" not in got[0][2] and "assigned_user_id" not in got[0][2]
    assert got[1:] == [
        ("updated", manager.id, {"title": {"from": "Write report", "to": "Renamed"},
                                 "deadline": {"from": None, "to": "2030-01-15T00:00:00Z"}}),
        ("assigned", admin.id, {"assigned_user_id": {"from": None, "to": emp.id}}),
        ("status_changed", emp.id, {"status": {"from": "pending", "to": "in-progress"}}),
        ("updated", manager.id, {"description": {"from": "first", "to": "second"},
                                 "deadline": {"from": "2030-01-15T00:00:00Z", "to": None}}),
        ("status_changed", emp.id, {"status": {"from": "in-progress", "to": "completed"}}),
        ("assigned", admin.id, {"assigned_user_id": {"from": emp.id, "to": None}}),
    ]
    ids = [h["id"] for h in history]
    assert ids == sorted(ids) and all("at" in h for h in history)


async def test_history_pages_with_link_next(client, team) -> None:  # type: ignore[no-untyped-def]
    manager = team["manager"]
    task, _ = await _create(client, manager)
    for n in range(4):
        await client.put(f"/task/{task['id']}", json={"title": f"t{n}"}, headers=manager.headers)
    response = await client.get(f"/task/{task['id']}/history?limit=2", headers=manager.headers)
    assert response.headers["X-Total-Count"] == "5"
    first = await response.get_json()
    link = response.headers["Link"]
    assert 'rel="next"' in link
    url = link.split(">")[0].lstrip("<")
    second = await (await client.get(url, headers=manager.headers)).get_json()
    assert [h["id"] for h in first + second] == sorted(h["id"] for h in first + second)
    assert len(first) == 2 and len(second) == 2


async def test_deleted_task_history_is_for_admins_only(client, team) -> None:  # type: ignore[no-untyped-def]
    admin, manager, emp = team["admin"], team["manager"], team["employee"]
    task, _ = await _create(client, manager, assigned_user_id=emp.id)
    assert (await client.delete(f"/task/{task['id']}", headers=admin.headers)).status_code == 204
    history = await _history(client, admin, task["id"])
    assert [h["action"] for h in history] == ["created", "deleted"]
    assert history[-1]["actor_id"] == admin.id
    for who in (manager, emp):
        response = await client.get(f"/task/{task['id']}/history", headers=who.headers)
        assert response.status_code == 404
    assert (await client.get("/task/999999/history", headers=admin.headers)).status_code == 404


async def test_employee_cannot_read_story_of_anothers_task(client, team) -> None:  # type: ignore[no-untyped-def]
    manager, emp, other = team["manager"], team["employee"], team["employee2"]
    task, _ = await _create(client, manager, assigned_user_id=emp.id)
    tid = task["id"]
    posted = await client.post(f"/task/{tid}/comments", json={"body": "hi"},
                               headers=emp.headers)
    assert posted.status_code == 201
    cid = (await posted.get_json())["id"]
    for method, path, body in [
        ("get", f"/task/{tid}/history", None), ("get", f"/task/{tid}/comments", None),
        ("post", f"/task/{tid}/comments", {"body": "x"}),
        ("put", f"/task/{tid}/comments/{cid}", {"body": "x"}),
        ("delete", f"/task/{tid}/comments/{cid}", None),
        ("get", f"/api/v1/task/{tid}/history", None),
    ]:
        kwargs = {"json": body} if body is not None else {}
        response = await getattr(client, method)(path, headers=other.headers, **kwargs)
        assert response.status_code == 404, (method, path)
        assert response.mimetype == PROBLEM
    assert await _history(client, emp, tid)


# --- If-Match / ETag ----------------------------------------------------------------------------

async def test_write_etag_equals_the_next_get(client, team) -> None:  # type: ignore[no-untyped-def]
    manager, emp = team["manager"], team["employee"]
    task, created = await _create(client, manager)
    path = f"/task/{task['id']}"
    get = await client.get(path, headers=manager.headers)
    assert get.headers["ETag"] == created
    etag = created
    for sub, body, who in [("", {"title": "a"}, manager),
                           ("/assign", {"user_id": emp.id}, manager),
                           ("/status", {"status": "completed"}, emp)]:
        response = await client.put(path + sub, json=body,
                                    headers={**who.headers, "If-Match": etag})
        assert response.status_code == 200, await response.get_data()
        assert response.headers["ETag"] != etag
        etag = response.headers["ETag"]
        assert (await client.get(path, headers=manager.headers)).headers["ETag"] == etag
        stale = await client.get(path, headers={**manager.headers, "If-None-Match": etag})
        assert stale.status_code == 304


async def test_stale_if_match_is_412_and_changes_nothing(client, team) -> None:  # type: ignore[no-untyped-def]
    admin, manager = team["admin"], team["manager"]
    task, old = await _create(client, manager)
    path = f"/task/{task['id']}"
    await client.put(path, json={"title": "new"}, headers=manager.headers)
    for method, sub, body in [("put", "", {"title": "lost"}),
                              ("put", "/status", {"status": "completed"}),
                              ("put", "/assign", {"user_id": manager.id}),
                              ("delete", "", None)]:
        kwargs = {"json": body} if body is not None else {}
        for tag in (old, f"W/{old}", '"nonsense"', '";", ""', '"v0"', '"v99999999999999999999"'):
            response = await getattr(client, method)(
                path + sub, headers={**admin.headers, "If-Match": tag}, **kwargs)
            assert response.status_code == 412, (method, sub, tag)
            assert (await response.get_json())["code"] == "precondition_failed"
    now = await (await client.get(path, headers=manager.headers)).get_json()
    assert now["title"] == "new" and now["status"] == "pending"
    assert now["assigned_user_id"] is None
    assert len(await _history(client, admin, task["id"])) == 2
    star = await client.put(path, json={"title": "star"},
                            headers={**manager.headers, "If-Match": "*"})
    assert star.status_code == 200
    gone = await client.put("/task/999999", json={"title": "x"},
                            headers={**manager.headers, "If-Match": "*"})
    assert gone.status_code == 404


async def test_two_puts_with_one_if_match_one_wins(client, team, db) -> None:  # type: ignore[no-untyped-def]
    manager, admin = team["manager"], team["admin"]
    task, etag = await _create(client, manager)
    path = f"/task/{task['id']}"

    async def put(who, title: str) -> Any:  # type: ignore[no-untyped-def]
        return await client.put(path, json={"title": title},
                                headers={**who.headers, "If-Match": etag})

    for round_ in range(3):
        responses = await asyncio.gather(put(manager, f"m{round_}"), put(admin, f"a{round_}"))
        codes = sorted(r.status_code for r in responses)
        assert codes == [200, 412]
        winner = next(r for r in responses if r.status_code == 200)
        won = await winner.get_json()
        now = await (await client.get(path, headers=manager.headers)).get_json()
        assert now["title"] == won["title"]
        history = await _history(client, admin, task["id"])
        assert history[-1]["changes"]["title"]["to"] == won["title"]
        etag = winner.headers["ETag"]


async def test_require_if_match_answers_428(app_with, team) -> None:  # type: ignore[no-untyped-def]
    async with app_with(require_if_match=True) as app:
        client = app.test_client()
        task, etag = await _create(client, team["manager"])
        path = f"/task/{task['id']}"
        for method, url, body in [("put", path, {"title": "x"}),
                                  ("put", path + "/status", {"status": "completed"}),
                                  ("put", path + "/assign", {"user_id": None}),
                                  ("delete", path, None),
                                  ("put", f"/users/{team['employee'].id}", {"role": "manager"})]:
            kwargs = {"json": body} if body is not None else {}
            response = await getattr(client, method)(url, headers=team["admin"].headers,
                                                     **kwargs)
            assert response.status_code == 428, (method, url)
            assert (await response.get_json())["code"] == "precondition_required"
        assert (await (await client.get(path, headers=team["admin"].headers)).get_json()
                )["title"] == "Write report"
        ok = await client.put(f"/task/{task['id']}", json={"title": "x"},
                              headers={**team["manager"].headers, "If-Match": etag})
        assert ok.status_code == 200


# --- comments -------------------------------------------------------------------------------

async def test_comments_crud_and_rules(client, team) -> None:  # type: ignore[no-untyped-def]
    admin, manager, emp = team["admin"], team["manager"], team["employee"]
    task, _ = await _create(client, manager, assigned_user_id=emp.id)
    base = f"/task/{task['id']}/comments"
    for body in ({"body": ""}, {"body": "x" * 5001}, {}, {"body": "ok", "author_id": 1}):
        bad = await client.post(base, json=body, headers=emp.headers)
        assert bad.status_code == 422, body
    posted = await client.post(base, json={"body": "x" * 5000}, headers=emp.headers)
    assert posted.status_code == 201
    comment = await posted.get_json()
    assert posted.headers["Location"] == f"{base}/{comment['id']}"
    assert comment["author_id"] == emp.id and comment["edited_at"] is None
    second = await (await client.post(base, json={"body": "two"},
                                      headers=manager.headers)).get_json()
    listed = await client.get(base + "?limit=1", headers=emp.headers)
    assert [c["id"] for c in await listed.get_json()] == [comment["id"]]
    assert "Link" in listed.headers and listed.headers["X-Total-Count"] == "2"
    # Only the author or an admin changes a comment.
    other = await client.put(f"{base}/{second['id']}", json={"body": "no"},
                             headers=emp.headers)
    assert other.status_code == 403
    edited = await client.put(f"{base}/{comment['id']}", json={"body": "fixed"},
                              headers=emp.headers)
    assert edited.status_code == 200
    assert (await edited.get_json())["edited_at"] is not None
    deleted = await client.delete(f"{base}/{second['id']}", headers=admin.headers)
    assert deleted.status_code == 204
    assert (await client.delete(f"{base}/{second['id']}",
                                headers=admin.headers)).status_code == 404
    history = await _history(client, manager, task["id"])
    assert [h["action"] for h in history][-2:] == ["commented", "commented"]


@pytest.fixture
def smtp_settings(make_settings, smtp_sink):  # type: ignore[no-untyped-def]
    _, port = smtp_sink
    return make_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False)


async def test_comment_emails_the_assignee_once_escaped(smtp_settings, smtp_sink, redis_sync, redis_url, make_user) -> None:  # type: ignore[no-untyped-def]
    sink, _ = smtp_sink
    manager, emp = await make_user("manager"), await make_user("employee")
    app = create_app(smtp_settings)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        task, _ = await _create(client, manager, assigned_user_id=emp.id)
        await run_worker_burst(smtp_settings, redis_url)
        sink.messages.clear()  # the assignment email
        response = await client.post(f"/task/{task['id']}/comments",
                                     json={"body": "<script>alert(1)</script> done?"},
                                     headers=manager.headers)
        assert response.status_code == 201
        # The assignee's own comment emails nobody.
        await client.post(f"/task/{task['id']}/comments", json={"body": "yes"},
                          headers=emp.headers)
    await run_worker_burst(smtp_settings, redis_url)
    await run_worker_burst(smtp_settings, redis_url)
    assert len(sink.messages) == 1
    message = sink.messages[0]
    assert message["To"] == emp.email
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<script>alert(1)</script> done?" in message.get_body(
        preferencelist=("plain",)).get_content()


async def test_user_if_match_and_etag(client, team) -> None:  # type: ignore[no-untyped-def]
    admin, emp = team["admin"], team["employee"]
    path = f"/users/{emp.id}"
    got = await client.get(path, headers=admin.headers)
    etag = got.headers["ETag"]
    assert (await client.get(path, headers={**admin.headers,
                                            "If-None-Match": etag})).status_code == 304
    changed = await client.put(path, json={"role": "manager"},
                               headers={**admin.headers, "If-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] == (await client.get(path, headers=admin.headers)
                                       ).headers["ETag"] != etag
    stale = await client.put(path, json={"role": "admin"},
                             headers={**admin.headers, "If-Match": etag})
    assert stale.status_code == 412
    assert (await (await client.get(path, headers=admin.headers)).get_json())["role"] == "manager"


async def test_deleting_a_user_moves_their_tasks_etags_and_history(client, team) -> None:  # type: ignore[no-untyped-def]
    admin, manager, emp = team["admin"], team["manager"], team["employee"]
    task, etag = await _create(client, manager, assigned_user_id=emp.id)
    path = f"/task/{task['id']}"
    assert (await client.get(path, headers=admin.headers)).headers["ETag"] == etag
    assert (await client.delete(f"/users/{emp.id}", headers=admin.headers)).status_code == 204
    after = await client.get(path, headers=admin.headers)
    assert after.headers["ETag"] != etag
    assert (await after.get_json())["assigned_user_id"] is None
    last = (await _history(client, admin, task["id"]))[-1]
    assert last["action"] == "assigned" and last["actor_id"] == admin.id
    assert last["changes"] == {"assigned_user_id": {"from": emp.id, "to": None}}
    stale = await client.put(path, json={"title": "x"},
                             headers={**manager.headers, "If-Match": etag})
    assert stale.status_code == 412


async def test_openapi_documents_safe_writes(client) -> None:  # type: ignore[no-untyped-def]
    spec = await (await client.get("/openapi.json")).get_json()
    paths = spec["paths"]

    def headers_of(path: str, method: str) -> set[str]:
        return {p["name"] for p in paths[path][method].get("parameters", [])
                if p["in"] == "header"}

    for path, method in [("/task/{task_id}", "put"), ("/task/{task_id}/status", "put"),
                         ("/task/{task_id}/assign", "put"), ("/task/{task_id}", "delete"),
                         ("/users/{user_id}", "put")]:
        assert "If-Match" in headers_of(path, method), (path, method)
        assert {"412", "428"} <= set(paths[path][method]["responses"]), (path, method)
    for path in ("/tasks", "/reports", "/register", "/task/{task_id}/comments"):
        assert "Idempotency-Key" in headers_of(path, "post"), path
        assert {"400", "409", "422"} <= set(paths[path]["post"]["responses"]), path
    for path, method in [("/task/{task_id}/history", "get"),
                         ("/task/{task_id}/comments/{comment_id}", "put"),
                         ("/task/{task_id}/comments/{comment_id}", "delete")]:
        assert method in paths[path]


async def test_event_rows_fit_the_live_event_log(client, team, db) -> None:  # type: ignore[no-untyped-def]
    """Issue #15's log reads the same rows: data is the task as GET returns it."""
    from sqlalchemy import select

    from taskapi.models import TaskEvent

    admin, manager, emp = team["admin"], team["manager"], team["employee"]
    task, _ = await _create(client, manager)
    tid = task["id"]
    await client.put(f"/task/{tid}/assign", json={"user_id": emp.id}, headers=manager.headers)
    await client.put(f"/task/{tid}/status", json={"status": "completed"}, headers=emp.headers)
    shown = await (await client.get(f"/task/{tid}", headers=admin.headers)).get_json()
    await client.post(f"/task/{tid}/comments", json={"body": "nice"}, headers=manager.headers)
    await client.delete(f"/task/{tid}", headers=admin.headers)
    async with db.transaction(write=False) as session:
        rows = list(await session.scalars(select(TaskEvent).order_by(TaskEvent.id)))
    assert [r.type for r in rows] == ["task.created", "task.assigned", "task.status_changed",
                                      "comment.created", "task.deleted"]
    assert rows[0].data == task and rows[0].audience == []
    assert rows[1].data["previous_assigned_user_id"] is None
    assert rows[1].data["assigned_user_id"] == emp.id and rows[1].audience == [emp.id]
    assert rows[2].data == shown and rows[2].actor_id == emp.id
    assert rows[3].data["comment"]["body"] == "nice"
    assert rows[4].data == {"id": tid} and rows[4].audience == [emp.id]
    assert [r.id for r in rows] == sorted(r.id for r in rows)
