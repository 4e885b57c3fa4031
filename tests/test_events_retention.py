"""EVENTS_RETENTION: the worker empties old stream payloads (histories stay), and a replay
that would reach them gets `event: reset`, then live events."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import select, update

from taskapi.models import utcnow
from taskapi.ops.worker import WorkerSettings
from taskapi.services import events
from tests.support.processes import run_cli, serve, shared_env
from tests.support.streams import sse


def test_the_worker_prunes_events_hourly() -> None:
    names = {job.name for job in WorkerSettings.cron_jobs}
    assert "cron:prune_events" in names


async def test_old_payloads_are_pruned_and_replay_past_them_resets(tmp_path: Path, database_url: str, redis_url: str, redis_sync, make_user, db) -> None:  # type: ignore[no-untyped-def]
    manager = await make_user("manager")
    env = shared_env(tmp_path / "data", database_url, redis_url,
                     TASKAPI_EVENTS_RETENTION="3600")
    with serve(env) as base:
        task = httpx.post(f"{base}/tasks", headers=manager.headers, json={"title": "old"}).json()
        for title in ("older", "recent"):
            assert httpx.put(f"{base}/task/{task['id']}", headers=manager.headers,
                             json={"title": title}).status_code == 200
        table = events.EVENTS
        async with db.transaction() as session:
            ids = list(await session.scalars(select(table.c.id).order_by(table.c.id)))
            # The first two are two hours old: past the one-hour retention.
            await session.execute(update(table).where(table.c.id.in_(ids[:2]))
                                  .values(created_at=utcnow() - timedelta(hours=2)))
        # Within the retention, a replay is exact.
        async with sse(f"{base}/events?last_event_id={ids[1]}", manager.headers) as stream:
            message = await stream.next()
            assert message is not None and message.id == str(ids[2])
        ran = run_cli("jobs", "run", "prune_events", env=env)
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.strip().endswith("2"), ran.stdout
        async with db.transaction(write=False) as session:
            rows = (await session.execute(select(table.c.id, table.c.data, table.c.changes)
                                          .order_by(table.c.id))).all()
        assert [row.data for row in rows[:2]] == [{}, {}]
        assert rows[2].data["title"] == "recent"
        assert rows[1].changes == {"title": {"from": "old", "to": "older"}}  # history stays
        history = httpx.get(f"{base}/task/{task['id']}/history", headers=manager.headers)
        assert [entry["action"] for entry in history.json()] == ["created", "updated",
                                                                 "updated"]
        # From before the pruned rows: reset (resume from the log's end), then live.
        end = ids[2]  # the log's last id
        for after in (0, ids[0]):
            async with sse(f"{base}/events?last_event_id={after}", manager.headers) as stream:
                reset = await stream.next()
                assert reset is not None and reset.event == "reset"
                assert reset.id == str(end) and reset.json() == {"reason": "expired"}
                httpx.put(f"{base}/task/{task['id']}/status", headers=manager.headers,
                          json={"status": "completed" if after else "in-progress"})
                live = await stream.next()
                assert live is not None and live.event == "task.status_changed"
                end = int(live.id or 0)
