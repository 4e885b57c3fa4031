"""Every list sort, alone and after a status and/or assignee filter, first page and a cursor's,
walks an index in order (decision 046): no full scan, no sort of the rows (EXPLAIN QUERY PLAN
on SQLite; EXPLAIN on PostgreSQL with sequential scans, bitmap scans and sorts priced out, as
a million rows would: what is left is what no index can serve). And the
pages those queries give visit every task once, in the sort's order."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, text

from taskapi.models import TaskStatus
from taskapi.services.stats import overdue_query
from taskapi.services.tasks.lists import _list_statements
from taskapi.services.tasks.search import _DUE_PROBES

SORTS = ["created_at", "-created_at", "deadline", "-deadline", "status"]
FILTERS = [(), ("p_status",), ("p_user",), ("p_status", "p_user")]
# The index each (sort key, filters) walks: one person's tasks are walked on their own
# index whatever the status filter.
INDEX = {
    ("created_at", ()): "ix_tasks_created",
    ("created_at", ("p_status",)): "ix_tasks_status_created",
    ("created_at", ("p_user",)): "ix_tasks_assignee_created",
    ("deadline", ()): "ix_tasks_due",
    ("deadline", ("p_status",)): "ix_tasks_status_due",
    ("deadline", ("p_user",)): "ix_tasks_assignee_due",
    ("status", ()): "ix_tasks_rank",
    ("status", ("p_status",)): "ix_tasks_status_id",
    ("status", ("p_user",)): "ix_tasks_assignee_rank",
}
BASE = datetime(2030, 1, 1, tzinfo=UTC)


def _seed(conn: Any) -> int:
    """3,000 tasks over 2 assignees and nobody, a third without a deadline; the first user."""
    conn.execute(text(
        "INSERT INTO users (username, email, password_hash, role, is_approved, "
        "email_confirmed, version) VALUES ('u1', 'u1@x.test', 'x', 'employee', true, false, "
        "1), ('u2', 'u2@x.test', 'x', 'employee', true, false, 1)"))
    users = [row[0] for row in conn.execute(text("SELECT id FROM users ORDER BY id"))]
    # Most tasks done, a few in progress (as a team's table grows): the filtered status is
    # the rarer one, as it would be at scale.
    rows = [{"s": "in-progress" if i % 10 == 0 else "pending" if i % 10 < 4 else "completed", "a": [None, *users][i % 3],
             "d": None if i % 3 == 0 else BASE + timedelta(hours=i % 17),
             "c": BASE - timedelta(minutes=i)} for i in range(3000)]
    from taskapi.models import Task  # the ORM's types bind the datetimes on each database

    conn.execute(Task.__table__.insert(), [
        {"title": "t", "description": "", "status": r["s"], "assigned_user_id": r["a"],
         "deadline": r["d"], "created_at": r["c"], "updated_at": r["c"], "assign_seq": 0,
         "version": 1} for r in rows])
    if conn.dialect.name == "postgresql":
        conn.execute(text("ANALYZE tasks"))
    return users[0]


def _plan(conn: Any, statement: Any, params: dict[str, Any]) -> str:
    """The plan of `statement` as the driver runs it (the SQL and values it is sent)."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, sql: str, values: Any, *_args: Any) -> None:
        sent.append((sql, values))

    event.listen(conn, "before_cursor_execute", capture)
    try:
        conn.execute(statement, params).all()
    finally:
        event.remove(conn, "before_cursor_execute", capture)
    sql, values = sent[-1]
    cursor = conn.connection.cursor()
    sqlite = conn.dialect.name == "sqlite"
    cursor.execute(("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + sql, values)
    return "\n".join(str(row[-1] if sqlite else row[0]) for row in cursor.fetchall())


def _assert_index_walk(plan: str, index: str, sqlite: bool, shape: str) -> None:
    if sqlite:
        assert "TEMP B-TREE" not in plan, f"{shape}: {plan}"
        assert all(line.strip() != "SCAN tasks" for line in plan.splitlines()), f"{shape}: {plan}"
        assert f"INDEX {index} " in plan + " ", f"{shape}: {plan}"
    else:
        assert "Seq Scan" not in plan and "Sort" not in plan, f"{shape}: {plan}"
        # In id order (the status sort within one status) PostgreSQL may walk the primary
        # key and check the status instead, when its statistics say the status is common:
        # it then reads about 1 / (that status's share) rows per row it returns.
        walks = [index, "pk_tasks"] if index == "ix_tasks_status_id" else [index]
        assert any(f"using {name} on tasks" in plan for name in walks), f"{shape}: {plan}"


async def test_every_list_sort_walks_an_index(db) -> None:  # type: ignore[no-untyped-def]
    user = await db.run(_seed, write=True)  # committed first: the counters' triggers run
    # at commit on PostgreSQL, and not under the settings below

    def work(conn: Any) -> list[str]:
        sqlite = conn.dialect.name == "sqlite"
        if not sqlite:  # at 3,000 rows a sort is cheap: price it (and full scans) out, so a
            # Sort or Seq Scan left in the plan means that no index serves the query
            for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
                conn.execute(text(f"SET LOCAL {setting} = off"))
        checked = []
        for sort, filters, after in itertools.product(SORTS, FILTERS, [False, True]):
            values: dict[str, Any] = {"p_limit": 21}
            if "p_status" in filters:
                values["p_status"] = TaskStatus.IN_PROGRESS
            if "p_user" in filters:
                values["p_user"] = user
            if after:
                values["p_key"] = {"status": 1, "created_at": BASE - timedelta(minutes=1500),
                                   "deadline": BASE + timedelta(hours=8)}[sort.lstrip("-")]
                values["p_last"] = 1500
            index = INDEX[(sort.lstrip("-"), tuple(f for f in filters if f != "p_status")
                           if "p_user" in filters else filters)]
            shape = f"sort={sort} filters={filters} cursor={after}"
            plan = _plan(conn, _list_statements(frozenset(filters), sort, after), values)
            _assert_index_walk(plan, index, sqlite, shape)
            checked.append(shape)
        plan = _plan(conn, overdue_query(), {"start": BASE, "now": BASE + timedelta(hours=5)})
        assert "ix_tasks_status_deadline" in plan and "Seq Scan" not in plan, plan
        assert "SCAN tasks" not in plan.replace("SCAN tasks USING", ""), plan
        return checked

    checked = await db.run(work, write=True)
    assert len(checked) == len(SORTS) * len(FILTERS) * 2


@pytest.mark.parametrize("sort", SORTS)
async def test_pages_of_each_sort_and_filter_visit_every_task_once_in_order(client, make_user, sort) -> None:  # type: ignore[no-untyped-def]
    manager, employee = await make_user("manager"), await make_user("employee")
    for i in range(14):
        deadline = None if i % 4 == 0 else (BASE + timedelta(days=i % 3)).isoformat()
        response = await client.post("/tasks", headers=manager.headers, json={
            "title": f"t{i}", "deadline": deadline,
            "assigned_user_id": employee.id if i % 2 else None})
        task = await response.get_json()
        if i % 3:
            await client.put(f"/task/{task['id']}/status", headers=manager.headers,
                             json={"status": ["in-progress", "completed"][i % 3 - 1]})
    everything = await (await client.get("/tasks?limit=200", headers=manager.headers)).get_json()
    rank = {"pending": 0, "in-progress": 1, "completed": 2}
    far = "9999-12-31T23:59:59.999999Z"

    def key(task: dict[str, Any]) -> Any:
        name = sort.lstrip("-")
        if name == "status":
            return (rank[task["status"]], task["id"])
        value = task[name] if name == "created_at" else (task["deadline"] or far)
        return (datetime.fromisoformat(value.replace("Z", "+00:00")), task["id"])

    for query in ("", "&status=in-progress", f"&assigned_user_id={employee.id}",
                  f"&assigned_user_id={employee.id}&status=pending"):
        url: str | None = f"/tasks?limit=3&sort={sort}{query}"
        seen: list[dict[str, Any]] = []
        while url:
            assert len(seen) <= len(everything), f"{query}: pages go on: {seen}"
            response = await client.get(url, headers=manager.headers)
            assert response.status_code == 200, await response.get_data()
            seen += await response.get_json()
            link = response.headers.get("Link")
            url = link.split(";")[0].strip("<>") if link else None
        expected = [t for t in everything
                    if ("status=" not in query or t["status"] == query.rsplit("=", 1)[1])
                    and ("assigned" not in query or t["assigned_user_id"] == employee.id)]
        expected.sort(key=key, reverse=sort.startswith("-"))
        assert [t["id"] for t in seen] == [t["id"] for t in expected], (query, seen, expected)


async def test_a_due_range_bounds_the_deadline_walk(db) -> None:  # type: ignore[no-untyped-def]
    """A deadline sort with due_before/due_after reads only the range from its index (a
    bound, not a walk that checks each row: the rows outside it may be most of the table);
    another sort's narrow range comes from the due probe, which reads ix_tasks_due alone."""
    user = await db.run(_seed, write=True)
    ranges = [("p_due_before",), ("p_due_after",), ("p_due_before", "p_due_after")]

    def work(conn: Any) -> int:
        sqlite = conn.dialect.name == "sqlite"
        if not sqlite:
            for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
                conn.execute(text(f"SET LOCAL {setting} = off"))
        checked = 0
        for sort, filters, due in itertools.product(["deadline", "-deadline"], FILTERS, ranges):
            values: dict[str, Any] = {"p_limit": 21, "p_status": TaskStatus.IN_PROGRESS,
                                      "p_user": user, "p_due_before": BASE + timedelta(hours=12),
                                      "p_due_after": BASE + timedelta(hours=3)}
            index = INDEX[("deadline", ("p_user",) if "p_user" in filters else filters)]
            shape = f"sort={sort} filters={filters + due}"
            plan = _plan(conn, _list_statements(frozenset(filters + due), sort, False), values)
            _assert_index_walk(plan, index, sqlite, shape)
            bound = ("<expr><?" in plan or "<expr>>?" in plan) if sqlite else \
                any("Index Cond" in line and "COALESCE" in line for line in plan.splitlines())
            assert bound, f"{shape}: {plan}"
            checked += 1
        probe = _plan(conn, _DUE_PROBES[(True, True)], {
            "b": BASE + timedelta(hours=12), "a": BASE + timedelta(hours=3), "cap": 2001})
        assert "ix_tasks_due" in probe and "Seq Scan" not in probe, probe
        return checked

    assert await db.run(work, write=True) == 2 * len(FILTERS) * len(ranges)
