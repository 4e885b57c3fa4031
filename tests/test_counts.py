"""The counters (decision 045): exact after a random mix of writes through the API (and raw
SQL), on SQLite and PostgreSQL; `/stats` and X-Total-Count agree with real counts;
`taskapi db recount` repairs what was corrupted; migration 0012 backfills existing rows."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from taskapi.models import Task
from tests.support.processes import run_cli, shared_env

STATUSES = ["pending", "in-progress", "completed"]
PAST, FUTURE = "2001-02-03T04:05:06+00:00", "2100-01-01T00:00:00+00:00"


def _by_day(by_deadline: dict[tuple[Any, ...], int]) -> dict[tuple[Any, ...], int]:
    """(status, deadline) counts as (status, its UTC day)."""
    days: Counter[tuple[Any, ...]] = Counter()
    for (status, deadline), n in by_deadline.items():
        if isinstance(deadline, datetime):
            deadline = deadline.astimezone(UTC).isoformat()
        days[(status, str(deadline)[:10])] += n
    return dict(days)


async def _real(db: Any) -> dict[str, Any]:
    """The counters and the counts of the rows, each as {key: n} without zeros."""
    def read(conn: Any) -> dict[str, Any]:
        def rows(sql: str) -> dict[tuple[Any, ...], int]:
            return {tuple(r[:-1]): int(r[-1]) for r in conn.execute(text(sql)) if r[-1]}
        return {
            # A key's count is the sum of its rows (one per slot); assignee -1: all tasks.
            "task_counts": rows("SELECT assignee_id, status, sum(n) FROM task_counts "
                                "GROUP BY assignee_id, status"),
            "tasks": rows("SELECT coalesce(assigned_user_id, 0), status, count(*) FROM tasks "
                          "GROUP BY coalesce(assigned_user_id, 0), status UNION ALL "
                          "SELECT -1, status, count(*) FROM tasks GROUP BY status"),
            "task_due_counts": rows("SELECT status, due_day, sum(n) FROM task_due_counts "
                                    "GROUP BY status, due_day"),
            "tasks_due": _by_day(rows("SELECT status, deadline, count(*) FROM tasks "
                                      "WHERE deadline IS NOT NULL GROUP BY status, deadline")),
            "user_counts": rows("SELECT is_approved, n FROM user_counts"),
            "users": rows("SELECT is_approved, count(*) FROM users GROUP BY is_approved"),
            "overdue": conn.scalar(select(func.count()).select_from(Task).where(
                Task.status != "completed", Task.deadline < datetime(2050, 1, 1, tzinfo=UTC))),
        }
    values = await db.run(read)
    values["user_counts"] = {(bool(k[0]),): n for k, n in values["user_counts"].items()}
    values["users"] = {(bool(k[0]),): n for k, n in values["users"].items()}
    return values


async def _check(client: Any, db: Any, admin: Any, employees: dict[int, Any]) -> None:
    real = await _real(db)
    assert real["task_counts"] == real["tasks"]
    assert real["task_due_counts"] == real["tasks_due"]
    assert real["user_counts"] == real["users"]
    tasks: Counter[tuple[int, str]] = Counter()
    for (assignee, status), n in real["tasks"].items():
        if assignee != -1:
            tasks[(int(assignee), status)] = n
    stats = await (await client.get("/stats", headers=admin.headers)).get_json()
    by_status = {s: sum(n for (_, st), n in tasks.items() if st == s) for s in STATUSES}
    assert stats == {
        "total_users": sum(real["users"].values()),
        "total_tasks": sum(tasks.values()),
        "completed_tasks": by_status["completed"],
        "tasks_by_status": by_status,
        "overdue_tasks": real["overdue"],
        "pending_approvals": real["users"].get((False,), 0),
    }

    async def total(url: str, who: Any = admin) -> int:
        response = await client.get(url, headers=who.headers)
        assert response.status_code == 200, url
        return int(response.headers["X-Total-Count"])

    assert await total("/tasks?limit=1") == sum(tasks.values())
    for status in STATUSES:
        assert await total(f"/tasks?limit=1&status={status}") == by_status[status]
    for user_id, who in list(employees.items())[:4]:
        mine = {s: tasks[(user_id, s)] for s in STATUSES}
        assert await total(f"/tasks?limit=1&assigned_user_id={user_id}") == sum(mine.values())
        assert await total("/tasks/mine?limit=1", who) == sum(mine.values())
        for status in STATUSES:
            assert await total(f"/tasks?limit=1&assigned_user_id={user_id}&status={status}") \
                == mine[status]
            assert await total(f"/tasks/mine?limit=1&status={status}", who) == mine[status]


@pytest.mark.parametrize("seed", [23, 2345])
async def test_counters_equal_real_counts_after_a_random_mix(app_with, db, make_user, seed) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    async with app_with(cache_ttl=0) as app:  # raw SQL writes below bump no cache version
        client = app.test_client()
        admin, manager = await make_user("admin"), await make_user("manager")
        employees = {u.id: u for u in [await make_user("employee") for _ in range(6)]}
        pending = [(await make_user("employee", approved=False)).id for _ in range(3)]
        for i in range(2):  # registrations through the API are pending users too
            response = await client.post("/register", json={
                "username": f"newcomer{seed}{i}", "email": f"n{seed}{i}@example.test",
                "password": "s3cret-pass"})
            assert response.status_code == 202
        task_ids: list[int] = []
        done = 0

        async def call(method: str, url: str, who: Any = manager, **body: Any) -> int:
            response = await getattr(client, method)(url, headers=who.headers,
                                                     json=body or None)
            return int(response.status_code)

        for step in range(300):
            op = rng.choices(["create", "status", "assign", "update", "delete", "user"],
                             [30, 30, 15, 8, 10, 7])[0]
            if op == "create" or not task_ids:
                assignee = rng.choice([None, *employees])
                response = await client.post("/tasks", headers=manager.headers, json={
                    "title": f"t{step}", "assigned_user_id": assignee,
                    "deadline": rng.choice([None, PAST, FUTURE])})
                if response.status_code == 201:
                    task_ids.append((await response.get_json())["id"])
                code = response.status_code
            elif op == "status":
                task_id = rng.choice(task_ids)
                code = await call("put", f"/task/{task_id}/status", status=rng.choice(STATUSES))
            elif op == "assign":
                code = await call("put", f"/task/{rng.choice(task_ids)}/assign",
                                  user_id=rng.choice([None, None, *employees]))
            elif op == "update":
                code = await call("put", f"/task/{rng.choice(task_ids)}",
                                  deadline=rng.choice([None, PAST, FUTURE]))
            elif op == "delete":
                task_id = task_ids.pop(rng.randrange(len(task_ids)))
                code = await call("delete", f"/task/{task_id}", admin)
            else:
                code = await _user_op(rng, call, db, admin, employees, pending)
            done += code < 300
            if step % 100 == 99:
                await _check(client, db, admin, employees)
        assert done > 240, done
        # A write no use case makes: raw SQL, straight at the tables.
        await db.run(lambda conn: conn.execute(text(
            "UPDATE tasks SET status = 'completed', assigned_user_id = NULL "
            "WHERE id % 3 = 0")), write=True)
        await _check(client, db, admin, employees)


async def _user_op(rng: random.Random, call: Any, db: Any, admin: Any,
                   employees: dict[int, Any], pending: list[int]) -> int:
    """Approve, unapprove, reject or delete a user (their tasks become unassigned)."""
    choice = rng.choice(["approve", "unapprove", "reject", "delete", "raw delete"])
    if choice == "approve" and pending:
        return int(await call("put", f"/users/{pending.pop()}/approve", admin))
    if choice == "reject" and pending:
        return int(await call("delete", f"/users/{pending.pop()}/reject", admin))
    if len(employees) <= 3:  # keep a few assignees
        return 0
    user_id = rng.choice(list(employees)[3:])  # the first ones stay: _check lists theirs
    if choice == "unapprove":
        employees.pop(user_id)
        pending.append(user_id)
        return int(await call("put", f"/users/{user_id}", admin, is_approved=False))
    employees.pop(user_id)
    if choice == "raw delete":  # the foreign keys' ON DELETE SET NULL / CASCADE
        def raw_delete(conn: Any) -> None:
            conn.execute(text("DELETE FROM auth_sessions WHERE user_id = :u"), {"u": user_id})
            conn.execute(text("DELETE FROM users WHERE id = :u"), {"u": user_id})

        await db.run(raw_delete, write=True)
        return 0
    return int(await call("delete", f"/users/{user_id}", admin))


async def test_recount_repairs_corrupted_counters(client, db, make_user, tmp_path: Path, database_url: str, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    admin, employee = await make_user("admin"), await make_user("employee")
    await make_user("employee", approved=False)
    for assignee in (employee.id, None, employee.id):
        response = await client.post("/tasks", headers=admin.headers, json={
            "title": "t", "assigned_user_id": assignee})
        assert response.status_code == 201
    before = await _real(db)
    assert before["task_counts"] == before["tasks"] == {
        (employee.id, "pending"): 2, (0, "pending"): 1, (-1, "pending"): 3}

    def corrupt(conn: Any) -> None:
        conn.execute(text("UPDATE task_counts SET n = n + 5 WHERE assignee_id = :u AND slot = "
                          "(SELECT min(slot) FROM task_counts WHERE assignee_id = :u)"),
                     {"u": employee.id})
        conn.execute(text("DELETE FROM task_counts WHERE assignee_id = 0"))
        conn.execute(text("INSERT INTO task_counts (assignee_id, status, n) "
                          "VALUES (999, 'completed', 4)"))
        conn.execute(text("UPDATE user_counts SET n = 40"))

    await db.run(corrupt, write=True)
    env = shared_env(tmp_path / "data", database_url, redis_url)
    result = run_cli("db", "recount", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"corrected task_counts ({employee.id}, pending): 7 -> 2" in lines
    assert "corrected task_counts (0, pending): 0 -> 1" in lines
    assert "corrected task_counts (999, completed): 4 -> 0" in lines
    assert "corrected user_counts (True): 40 -> 2" in lines
    assert "corrected user_counts (False): 40 -> 1" in lines
    assert lines[-1] == "counters recounted: 5 corrected"
    after = await _real(db)
    assert after["task_counts"] == after["tasks"] == before["tasks"]
    assert after["user_counts"] == after["users"] == before["users"]
    again = run_cli("db", "recount", env=env)
    assert again.stdout.splitlines() == ["counters recounted: 0 corrected"]


async def test_total_is_absent_where_no_counter_serves_the_filter(client, make_user) -> None:  # type: ignore[no-untyped-def]
    manager = await make_user("manager")
    for title in ("alpha one", "alpha two", "beta"):
        response = await client.post("/tasks", headers=manager.headers, json={"title": title})
        assert response.status_code == 201
    paged = await client.get("/tasks?q=alpha&limit=1", headers=manager.headers)
    assert "X-Total-Count" not in paged.headers and "Link" in paged.headers
    whole = await client.get("/tasks?q=alpha", headers=manager.headers)
    assert whole.headers["X-Total-Count"] == "2" and "Link" not in whole.headers
    due = await client.get(f"/tasks?due_before={FUTURE.replace('+', '%2B')}&limit=1",
                           headers=manager.headers)
    assert due.status_code == 200 and due.headers["X-Total-Count"] == "0"
    counted = await client.get("/tasks?status=pending&limit=1", headers=manager.headers)
    assert counted.headers["X-Total-Count"] == "3"


async def test_migrations_backfill_counters_from_existing_rows(db, database_url: str) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from alembic import command

    from taskapi.ops.migrate import alembic_config, upgrade

    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0010")

    def seed(conn: Any) -> None:
        conn.execute(text(
            "INSERT INTO users (username, email, password_hash, role, is_approved, "
            "email_confirmed, version) VALUES ('a', 'a@x.test', 'x', 'employee', true, false, "
            "1), ('b', 'b@x.test', 'x', 'employee', false, false, 1)"))
        user_id = conn.scalar(text("SELECT id FROM users WHERE username = 'a'"))
        for status, assignee, day in (("pending", user_id, 3), ("pending", None, None),
                                      ("completed", user_id, 3), ("completed", user_id, 4)):
            conn.execute(Task.__table__.insert().values(
                title="t", description="", status=status, assigned_user_id=assignee,
                deadline=None if day is None else datetime(2030, 1, day, 9, tzinfo=UTC),
                assign_seq=0, version=1))

    try:
        await db.run(seed, write=True)
    finally:
        await asyncio.to_thread(upgrade, database_url)
    real = await _real(db)
    assert real["task_counts"] == real["tasks"] and len(real["tasks"]) == 5  # 3 + 2 of ALL
    assert real["task_due_counts"] == real["tasks_due"] == {
        ("pending", "2030-01-03"): 1, ("completed", "2030-01-03"): 1,
        ("completed", "2030-01-04"): 1}  # migration 0015's backfill
    assert real["user_counts"] == real["users"] == {(True,): 1, (False,): 1}


async def test_overdue_is_the_days_before_today_and_today_until_now(client, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """overdue_count at a chosen instant: task_due_counts for the days before it, the index
    range for its own day up to it; equal to counting the rows, through status changes,
    deadline moves and deletes."""
    from taskapi.services.stats import overdue_count

    admin = await make_user("admin")
    now = datetime(2030, 6, 15, 12, 0, tzinfo=UTC)
    deadlines = ["2030-06-15T11:00:00Z", "2030-06-15T12:00:00Z", "2030-06-15T13:00:00Z",
                 "2030-06-14T23:59:59.999999Z", "2030-06-16T00:00:00Z", "2030-06-15T00:00:00Z",
                 "2001-01-01T00:00:00+05:00", None]
    ids = []
    for deadline in deadlines:
        response = await client.post("/tasks", headers=admin.headers,
                                     json={"title": "t", "deadline": deadline})
        ids.append((await response.get_json())["id"])

    def counts(conn: Any) -> tuple[int, int]:
        real = conn.scalar(select(func.count()).select_from(Task).where(
            Task.status != "completed", Task.deadline < now))
        return overdue_count(conn, now), int(real)

    assert await db.run(counts) == (4, 4)  # 11:00, yesterday 23:59, today 00:00, 2001
    await client.put(f"/task/{ids[0]}/status", headers=admin.headers, json={"status": "completed"})
    await client.put(f"/task/{ids[3]}/status", headers=admin.headers,
                     json={"status": "in-progress"})
    await client.put(f"/task/{ids[4]}", headers=admin.headers,
                     json={"deadline": "2030-06-13T08:00:00Z"})
    await client.put(f"/task/{ids[6]}", headers=admin.headers, json={"deadline": None})
    await client.delete(f"/task/{ids[5]}", headers=admin.headers)
    assert await db.run(counts) == (2, 2)  # yesterday's (in progress), the moved one
