"""Email and background jobs: every type arrives once, through real SMTP, whatever fails."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from taskapi import mail
from taskapi.app import create_app
from taskapi.models import EmailOutbox, EmailStatus, ReportRequest, Task, TaskStatus, User
from taskapi.services import outbox, reminders
from tests.support.ports import free_port
from tests.support.values import PASSWORD
from tests.support.worker import run_worker_burst


@pytest.fixture
def smtp_settings(make_settings, smtp_sink):  # type: ignore[no-untyped-def]
    _, port = smtp_sink
    return make_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False,
                         mail_from="taskapi <noreply@taskapi.example>")


def _text(message: Any) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[no-any-return]


def _html(message: Any) -> str:
    return message.get_body(preferencelist=("html",)).get_content()  # type: ignore[no-any-return]


async def _add_task(db, title: str, user_id: int | None, status: str = "pending",  # type: ignore[no-untyped-def]
                    deadline: datetime | None = None) -> int:
    async with db.transaction() as session:
        task = Task(title=title, assigned_user_id=user_id, status=TaskStatus(status),
                    deadline=deadline,
                    completed_at=datetime.now(UTC) if status == "completed" else None)
        session.add(task)
        await session.flush()
        return task.id


async def test_assignment_email_arrives(smtp_settings, smtp_sink, redis_sync, redis_url, make_user) -> None:  # type: ignore[no-untyped-def]
    sink, _ = smtp_sink
    manager, employee = await make_user("manager"), await make_user("employee")
    app = create_app(smtp_settings)
    async with app.test_app() as test_app:
        response = await test_app.test_client().post("/tasks", headers=manager.headers, json={
            "title": "Fix the <b>build</b>", "description": "CI is red", "deadline": "2030-05-01",
            "assigned_user_id": employee.id})
        assert response.status_code == 201
    await run_worker_burst(smtp_settings, redis_url)
    assert len(sink.messages) == 1
    message = sink.messages[0]
    assert message["To"] == employee.email
    assert message["Subject"] == "New task for you: Fix the <b>build</b>"
    assert "2030-05-01 00:00 UTC" in _text(message) and "CI is red" in _text(message)
    assert "Fix the &lt;b&gt;build&lt;/b&gt;" in _html(message)  # escaped in HTML


# --- reminders ------------------------------------------------------------------------------

async def test_reminders_go_to_employees_with_open_tasks_once(smtp_settings, smtp_sink, db, make_user) -> None:  # type: ignore[no-untyped-def]
    sink, _ = smtp_sink
    busy = await make_user("employee")
    done = await make_user("employee")  # only completed tasks
    idle = await make_user("employee")  # no tasks
    pending = await make_user("employee", approved=False)
    manager = await make_user("manager")
    past = datetime.now(UTC) - timedelta(days=2)
    await _add_task(db, "Overdue thing", busy.id, deadline=past)
    await _add_task(db, "Started thing", busy.id, status="in-progress")
    await _add_task(db, "Finished thing", busy.id, status="completed")
    await _add_task(db, "All done", done.id, status="completed")
    await _add_task(db, "Not yet approved", pending.id)
    await _add_task(db, "Manager's own", manager.id)

    first = await reminders.send_daily_reminders(db, smtp_settings, force=True)
    assert first["sent"] == 1
    second = await reminders.send_daily_reminders(db, smtp_settings, force=True)
    assert second["sent"] == 0 and second["created"] == 0
    assert [m["To"] for m in sink.messages] == [busy.email]
    text = _text(sink.messages[0])
    assert "Overdue thing" in text and "OVERDUE" in text and "Started thing" in text
    assert "Finished thing" not in text
    assert "1 overdue" in sink.messages[0]["Subject"]
    assert idle.email not in [m["To"] for m in sink.messages]


async def test_two_workers_at_once_send_each_reminder_once(smtp_settings, smtp_sink, make_settings, db, make_user) -> None:  # type: ignore[no-untyped-def]
    sink, _ = smtp_sink
    users = [await make_user("employee") for _ in range(30)]
    for user in users:
        await _add_task(db, f"task of {user.id}", user.id)
    from taskapi.core.db import Database

    other_db = Database.from_url(str(smtp_settings.sqlalchemy_url))  # a second "worker"
    try:
        results = await asyncio.gather(
            reminders.send_daily_reminders(db, smtp_settings, force=True),
            reminders.send_daily_reminders(other_db, smtp_settings, force=True),
            reminders.send_daily_reminders(db, smtp_settings, force=True),
        )
    finally:
        await other_db.dispose()
    assert sum(r["sent"] for r in results) == 30
    assert Counter(m["To"] for m in sink.messages) == {u.email: 1 for u in users}


@pytest.mark.parametrize("zone,day", [
    ("Europe/Berlin", "2026-03-29"),      # spring forward: 02:00 → 03:00
    ("Europe/Berlin", "2026-10-25"),      # fall back: 03:00 → 02:00
    ("America/New_York", "2026-03-08"),
    ("America/New_York", "2026-11-01"),
])
async def test_one_reminder_per_local_day_at_the_local_hour_across_dst(make_settings, redis_sync, db, make_user, zone: str, day: str) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(timezone=zone, reminder_hour=10)
    own_zone = await make_user("employee")  # the server's zone
    tokyo = await make_user("employee")
    async with db.transaction() as session:
        (await session.get(User, tokyo.id)).timezone = "Asia/Tokyo"
    for user in (own_zone, tokyo):
        await _add_task(db, "daily chore", user.id)

    sent: list[tuple[str, datetime]] = []
    real_send = mail.Mailer.send

    async def record(self: mail.Mailer, message: Any, kind: str = "email") -> None:
        sent.append((message["To"], clock))
        await real_send(self, message, kind)

    start = datetime.fromisoformat(day).replace(tzinfo=ZoneInfo(zone)) - timedelta(days=1)
    clock = start.astimezone(UTC)
    with mock.patch.object(mail.Mailer, "send", record):
        while clock < (start + timedelta(days=3)).astimezone(UTC):  # every cron tick, 3 days
            await reminders.send_daily_reminders(db, settings, now=clock)
            clock += timedelta(minutes=15)

    for user, user_zone in ((own_zone, ZoneInfo(zone)), (tokyo, ZoneInfo("Asia/Tokyo"))):
        times = [at.astimezone(user_zone) for to, at in sent if to == user.email]
        days = [t.date() for t in times]
        assert len(days) == len(set(days)), f"{user_zone}: two reminders on one day: {times}"
        # The day the simulation starts in may begin past 10:00 (caught up at the first
        # tick); every later day gets its reminder at 10:00 local exactly.
        first_day = start.astimezone(user_zone).date()
        later = [t for t in times if t.date() > first_day]
        assert all(t.hour == 10 and t.minute == 0 for t in later), times
        assert len(later) >= 2


# --- failures -------------------------------------------------------------------------------

async def test_smtp_down_then_up_delivers_once(make_settings, smtp_sink, redis_sync, db, make_user) -> None:  # type: ignore[no-untyped-def]
    sink, port = smtp_sink
    down = make_settings(smtp_host="127.0.0.1", smtp_port=free_port(), smtp_starttls=False)
    up = make_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False)
    user = await make_user("employee")
    await _add_task(db, "chore", user.id)
    now = datetime.now(UTC)
    first = await reminders.send_daily_reminders(db, down, force=True, now=now)
    assert first["created"] == 1 and first["retry"] == 1 and first.get("sent", 0) == 0
    async with db.transaction(write=False) as session:
        row = (await session.scalars(select(EmailOutbox))).one()
        assert row.status == EmailStatus.PENDING and row.attempts == 1 and row.last_error
    # Not due yet: the sweeper waits for the backoff.
    assert await outbox.deliver_due(db, up, now=now + timedelta(seconds=5)) == Counter()
    later = now + outbox.backoff(1) + timedelta(seconds=1)
    assert (await outbox.deliver_due(db, up, now=later))["sent"] == 1
    assert (await outbox.deliver_due(db, up, now=later + timedelta(hours=2))) == Counter()
    assert await reminders.send_daily_reminders(db, up, force=True, now=later) == Counter()
    assert len(sink.messages) == 1


async def test_smtp_down_for_good_marks_the_row_failed(make_settings, redis_sync, db, make_user) -> None:  # type: ignore[no-untyped-def]
    down = make_settings(smtp_host="127.0.0.1", smtp_port=free_port(), smtp_starttls=False)
    user = await make_user("employee")
    await _add_task(db, "chore", user.id)
    now = datetime.now(UTC)
    await reminders.send_daily_reminders(db, down, force=True, now=now)
    for _ in range(outbox.MAX_ATTEMPTS + 2):
        now += timedelta(hours=2)
        await outbox.deliver_due(db, down, now=now)
    async with db.transaction(write=False) as session:
        row = (await session.scalars(select(EmailOutbox))).one()
    assert row.status == EmailStatus.FAILED and row.attempts == outbox.MAX_ATTEMPTS
    assert "Error" in (row.last_error or "")


async def test_redis_down_at_registration_welcome_goes_out_later(smtp_settings, smtp_sink, make_settings, redis_sync, redis_url, db) -> None:  # type: ignore[no-untyped-def]
    sink, port = smtp_sink
    offline = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0",
                            smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False)
    app = create_app(offline)
    async with app.test_app() as test_app:
        response = await test_app.test_client().post("/register", json={
            "username": "henry", "email": "henry@example.test", "password": PASSWORD})
        assert response.status_code == 202
    assert sink.messages == []
    # Redis is back: the worker's sweeper cron finds the pending row.
    from taskapi.jobs.emails import deliver_pending_emails

    worker = await run_worker_burst(smtp_settings, redis_url)
    assert worker.jobs_complete == 0  # nothing was queued while Redis was down
    result = await deliver_pending_emails({"db": db, "settings": smtp_settings})
    assert "'sent': 1" in result
    assert [m["To"] for m in sink.messages] == ["henry@example.test"]
    assert "'sent'" not in await deliver_pending_emails({"db": db, "settings": smtp_settings})


async def test_stale_claim_of_a_dead_worker_is_sent_by_the_next_run(smtp_settings, smtp_sink, db, make_user) -> None:  # type: ignore[no-untyped-def]
    sink, _ = smtp_sink
    users = [await make_user("employee") for _ in range(3)]
    for user in users:
        await _add_task(db, "chore", user.id)
    now = datetime.now(UTC)
    # A worker that recorded the reminders, claimed them and died (killed, not cancelled:
    # a cancel releases the claims, tests/test_worker_shutdown.py) before writing outcomes.
    with mock.patch.object(mail.Mailer, "send", side_effect=OSError("connection reset")), \
            mock.patch.object(outbox, "_record", side_effect=RuntimeError("killed")):
        with pytest.raises(RuntimeError, match="killed"):
            await reminders.send_daily_reminders(db, smtp_settings, force=True, now=now)
    assert sink.messages == []
    soon = await reminders.send_daily_reminders(db, smtp_settings, force=True, now=now)
    assert soon.get("sent", 0) == 0  # still claimed by the dead worker
    later = now + timedelta(seconds=smtp_settings.email_claim_timeout + 1)
    assert (await reminders.send_daily_reminders(db, smtp_settings, force=True, now=later))["sent"] == 3
    assert Counter(m["To"] for m in sink.messages) == {u.email: 1 for u in users}


# --- reports --------------------------------------------------------------------------------

async def test_report_end_to_end(smtp_settings, smtp_sink, redis_sync, redis_url, db, make_user) -> None:  # type: ignore[no-untyped-def]
    sink, _ = smtp_sink
    admin, manager = await make_user("admin"), await make_user("manager")
    other_manager, employee = await make_user("manager"), await make_user("employee")
    await _add_task(db, "late one", employee.id,
                    deadline=datetime.now(UTC) - timedelta(days=1))
    await _add_task(db, "done one", employee.id, status="completed")
    await _add_task(db, "nobody's", None)
    app = create_app(smtp_settings)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        assert (await client.post("/reports", headers=employee.headers)).status_code == 403
        first = await client.post("/reports", headers=manager.headers, json={"period_days": 30})
        assert first.status_code == 202
        job = await first.get_json()
        assert job["status"] == "queued" and job["period_days"] == 30
        again = await client.post("/reports", headers=manager.headers, json={"period_days": 30})
        assert (await again.get_json())["job_id"] == job["job_id"]
        default = await client.post("/reports", headers=manager.headers)  # no body: 7 days
        assert (await default.get_json())["period_days"] == 7
        bad = await client.post("/reports", headers=manager.headers, json={"period_days": 0})
        assert bad.status_code == 422

        url = f"/reports/{job['job_id']}"
        assert (await client.get(url, headers=other_manager.headers)).status_code == 404
        assert (await client.get(url, headers=employee.headers)).status_code == 403
        assert (await (await client.get(url, headers=admin.headers)).get_json())["status"] == "queued"
        await run_worker_burst(smtp_settings, redis_url)
        done = await (await client.get(url, headers=manager.headers)).get_json()
        assert done["status"] == "complete" and done["finished_at"]

    reports = {m["Subject"]: m for m in sink.messages if m["Subject"].startswith("Task report")}
    assert sorted(reports) == ["Task report: last 30 days", "Task report: last 7 days"]
    assert {m["To"] for m in reports.values()} == {manager.email}
    text = _text(reports["Task report: last 30 days"])
    assert "All tasks now, whenever created: 3" in text and "Completed: 1" in text and "Created:   3" in text
    assert "late one" in text and "Overdue now (not completed, deadline passed): 1" in text
    assert employee.email.split("@")[0] in text and "unassigned" in text


async def test_report_of_a_deleted_requester_is_dropped_and_sends_nothing(smtp_settings, smtp_sink, redis_sync, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """Deleting a user deletes their report requests with them (ON DELETE CASCADE): the queued
    job then finds no report, sends nothing, and says it skipped it."""
    sink, _ = smtp_sink
    manager = await make_user("manager")
    from taskapi.services.reports import build_and_send

    async with db.transaction() as session:
        session.add(ReportRequest(id="r1", requester_id=manager.id, period_days=7))
    async with db.transaction() as session:
        await session.delete(await session.get(User, manager.id))
    async with db.session(write=False) as session:
        assert await session.get(ReportRequest, "r1") is None
    async with mail.Mailer(smtp_settings) as mailer:
        result = await build_and_send(db, smtp_settings, mailer, "r1")
    assert result == "skipped: report r1 no longer exists"
    assert sink.messages == []
