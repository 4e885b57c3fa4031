"""`q` through the search index (decision 047), on SQLite and PostgreSQL: a case-insensitive
substring of the title or description, whichever way a list finds it (the index's candidates
for a rare substring, a walk checking each row for a common one) and whatever the text holds
(LIKE wildcards, FTS syntax, quotes, non-ASCII); the index follows creates, edits and
deletes; migration 0014 backfills an existing database in batches; and the probe looks the
index up rather than reading the table."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import text

from taskapi.services.tasks import search

TEXTS = [
    ("Quarterly report", ""),
    ("Beta", "needs a REPORT too"),
    ("Gamma 100%_done", "under_score and 50% off"),
    ('Say "hello" OR NEAR(x) * col:title ^start', "AND NOT -minus"),
    ("Müller's Übersicht", "Straße café"),
    ("ab", "x"),
]
QUERIES = {
    "report": [0, 1], "REPORT": [0, 1], "eport t": [1], "port": [0, 1],
    "100%_": [2], "%": [2], "_": [2], "50% off": [2], "der_sc": [2],
    '"hello"': [3], "OR NEAR(": [3], "* col:": [3], "^start": [3], "NOT -": [3], '"': [3],
    "müller": [4], "Straße": [4], "café": [4], "ab": [5], "a": [0, 1, 2, 3, 4, 5],
    "zzz": [], "report zzz": [],
}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
async def seeded(app_with, make_user) -> Any:  # type: ignore[no-untyped-def]
    """(a client of an app with the cache off, a manager, the tasks' ids in TEXTS' order)."""
    async with app_with(cache_ttl=0) as app:
        client = app.test_client()
        manager = await make_user("manager")
        ids = []
        for title, description in TEXTS:
            response = await client.post("/tasks", headers=manager.headers,
                                         json={"title": title, "description": description})
            assert response.status_code == 201
            ids.append((await response.get_json())["id"])
        yield client, manager, ids


async def _found(client: Any, who: Any, q: str, extra: str = "") -> list[int]:
    response = await client.get(f"/tasks?q={quote(q, safe='')}&sort=created_at{extra}",
                                headers=who.headers)
    assert response.status_code == 200, await response.get_data()
    return [task["id"] for task in await response.get_json()]


@pytest.mark.parametrize("cap", [search.CANDIDATES, 0], ids=["candidates", "walk"])
async def test_q_is_a_case_insensitive_substring_either_way(seeded, monkeypatch, cap: int) -> None:  # type: ignore[no-untyped-def]
    """cap 0: every indexed query counts as common, so the list walks and checks each row."""
    client, manager, ids = seeded
    monkeypatch.setattr(search, "CANDIDATES", cap)
    for q, expected in QUERIES.items():
        assert await _found(client, manager, q) == [ids[i] for i in expected], q
    assert await _found(client, manager, "report", "&status=completed") == []
    # A 422 for what the schema refuses, as before: nothing reaches the index.
    response = await client.get("/tasks?q=", headers=manager.headers)
    assert response.status_code == 422


async def test_the_index_follows_edits_and_deletes(seeded, make_user) -> None:  # type: ignore[no-untyped-def]
    client, manager, ids = seeded
    admin = await make_user("admin")
    response = await client.put(f"/task/{ids[0]}", headers=manager.headers,
                                json={"title": "Yearly summary"})
    assert response.status_code == 200
    assert await _found(client, manager, "report") == [ids[1]]
    assert await _found(client, manager, "early summ") == [ids[0]]
    await client.put(f"/task/{ids[1]}", headers=manager.headers, json={"description": "none"})
    await client.put(f"/task/{ids[1]}/status", headers=manager.headers,
                     json={"status": "completed"})  # a write that leaves the text alone
    assert await _found(client, manager, "report") == []
    assert await _found(client, manager, "beta") == [ids[1]]
    assert (await client.delete(f"/task/{ids[1]}", headers=admin.headers)).status_code == 204
    assert await _found(client, manager, "beta") == []


@pytest.mark.parametrize("cap", [search.CANDIDATES, 0], ids=["candidates", "walk"])
@pytest.mark.parametrize("sort", ["created_at", "-deadline", "status"])
async def test_pages_of_a_search_visit_each_match_once(seeded, monkeypatch, cap: int, sort: str) -> None:  # type: ignore[no-untyped-def]
    client, manager, _ = seeded
    monkeypatch.setattr(search, "CANDIDATES", cap)
    matching = []
    for i in range(9):
        body = {"title": f"needle {i}", "deadline": f"2030-01-{1 + i % 4:02d}T00:00:00Z"}
        response = await client.post("/tasks", headers=manager.headers, json=body)
        matching.append((await response.get_json())["id"])
        if i % 3 == 0:
            await client.put(f"/task/{matching[-1]}/status", headers=manager.headers,
                             json={"status": "in-progress"})
    whole = await client.get(f"/tasks?q=needle&sort={sort}", headers=manager.headers)
    expected = [task["id"] for task in await whole.get_json()]
    assert sorted(expected) == matching
    seen: list[int] = []
    url: str | None = f"/tasks?q=needle&sort={sort}&limit=2"
    while url:
        assert len(seen) <= len(expected), seen
        response = await client.get(url, headers=manager.headers)
        seen += [task["id"] for task in await response.get_json()]
        link = response.headers.get("Link")
        url = link.split(";")[0].strip("<>") if link else None
    assert seen == expected


@pytest.mark.parametrize("cap", [search.CANDIDATES, 0], ids=["candidates", "walk"])
async def test_due_ranges_are_the_same_on_every_path(seeded, monkeypatch, cap: int) -> None:  # type: ignore[no-untyped-def]
    """due_before / due_after / both, on each sort: from the due probe's ids or a walk (the
    other sorts), or as the deadline index's range (the deadline sorts), the same tasks in
    the sort's order; a task without a deadline in none, one due at the largest instant
    (what NULLs sort as) in due_after's."""
    client, manager, _ = seeded
    monkeypatch.setattr(search, "CANDIDATES", cap)
    for i, deadline in enumerate([None, "9999-12-31T23:59:59.999999Z", None,
                                  "9999-12-31T23:59:59.999999Z", *(
            f"2030-01-{day:02d}T{hour:02d}:00:00Z" for hour, day in enumerate((1, 2, 2, 3, 5, 9)))]):
        response = await client.post("/tasks", headers=manager.headers,
                                     json={"title": f"due {i}", "deadline": deadline})
        assert response.status_code == 201
    everything = await (await client.get("/tasks?limit=200", headers=manager.headers)).get_json()
    ranges = {"due_before=2030-01-03": lambda d: d < "2030-01-03",
              "due_after=2030-01-02": lambda d: "2030-01-02" <= d,
              "due_after=2030-01-02&due_before=2030-01-05": lambda d: "2030-01-02" <= d < "2030-01-05"}
    for query, inside in ranges.items():
        want = {t["id"] for t in everything if t["deadline"] and inside(t["deadline"])}
        assert len(want) >= 2, query
        for sort in ("created_at", "-created_at", "deadline", "-deadline", "status"):
            whole = await client.get(f"/tasks?{query}&sort={sort}", headers=manager.headers)
            ids = [t["id"] for t in await whole.get_json()]
            everything_sorted = await (await client.get(
                f"/tasks?limit=200&sort={sort}", headers=manager.headers)).get_json()
            assert ids == [t["id"] for t in everything_sorted if t["id"] in want], (query, sort)
            paged: list[int] = []
            url: str | None = f"/tasks?{query}&sort={sort}&limit=1"
            while url:  # one task a page: the cursor crosses the parts (_page_rows)
                assert len(paged) <= len(ids), (query, sort, paged)
                page = await client.get(url, headers=manager.headers)
                paged += [t["id"] for t in await page.get_json()]
                link = page.headers.get("Link")
                url = link.split(";")[0].strip("<>") if link else None
            assert paged == ids, (query, sort)


def _migration() -> Any:
    path = ROOT / "migrations" / "versions" / "0014_task_search.py"
    spec = importlib.util.spec_from_file_location("migration_0014", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_migration_backfills_existing_tasks_in_batches(db, database_url: str) -> None:  # type: ignore[no-untyped-def]
    from alembic import command

    from taskapi.ops.migrate import alembic_config, upgrade

    await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0013")

    def seed(conn: Any) -> None:
        for i in range(25):
            conn.execute(text(
                "INSERT INTO tasks (title, description, status, assign_seq, version) "
                "VALUES (:t, :d, 'pending', 0, 1)"), {"t": f"old task {i}", "d": f"body{i}x"})

    try:
        await db.run(seed, write=True)
    finally:
        await asyncio.to_thread(upgrade, database_url)

    def check(conn: Any) -> tuple[list[int], int]:
        found = search.candidates(conn, "body17x")
        # Again, seven at a time: 25 tasks are 4 batches (the rows are there already).
        return [] if found is None else json.loads(found), _migration().backfill(conn, batch=7)

    found, batches = await db.run(check, write=True)
    assert len(found) == 1 and batches == 4

    def one(conn: Any) -> int:
        return int(conn.scalar(text("SELECT id FROM tasks WHERE title = 'old task 17'")))

    assert found == [await db.run(one)]


async def test_the_probe_looks_the_index_up(db) -> None:  # type: ignore[no-untyped-def]
    def plan(conn: Any) -> str:
        if conn.dialect.name == "sqlite":
            rows = conn.execute(text("EXPLAIN QUERY PLAN SELECT rowid FROM task_search "
                                     "WHERE task_search MATCH '\"needle\"' LIMIT 5"))
            return " ".join(str(row[-1]) for row in rows)
        conn.execute(text("SET enable_seqscan = off"))  # as a million rows would price it
        try:
            rows = conn.execute(text(
                "EXPLAIN SELECT task_id FROM task_search WHERE title ILIKE '%needle%' "
                "OR description ILIKE '%needle%' LIMIT 5"))
            return " ".join(row[0] for row in rows)
        finally:
            conn.execute(text("RESET enable_seqscan"))

    shown = await db.run(plan, write=True)
    if "VIRTUAL TABLE INDEX" not in shown:
        assert "ix_task_search_title" in shown and "ix_task_search_description" in shown, shown
