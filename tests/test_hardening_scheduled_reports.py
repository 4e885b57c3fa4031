"""Scheduled reports (issue #22): admins and managers get the summary daily, weekly or never,
at REPORT_HOUR their time, once per period, through a real worker and real SMTP."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from arq.connections import RedisSettings, create_pool
from sqlalchemy import select, update

from taskapi import mail
from taskapi.app import create_app
from taskapi.config import ConfigError, Settings, load_settings
from taskapi.core.redis_client import QUEUE_NAME
from taskapi.models import EmailOutbox, ReportRequest, Role, Task, TaskStatus, User
from tests.support.processes import cli_env, run_cli
from tests.support.worker import run_worker_burst


@pytest.fixture
def smtp_settings(make_settings, smtp_sink):  # type: ignore[no-untyped-def]
    _, port = smtp_sink

    def _make(**overrides: Any) -> Settings:
        return make_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False,  # type: ignore[no-any-return]
                             **overrides)

    return _make


def _text(message: Any) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[no-any-return]


def zone_at(local_hour: int) -> str:
    """An Etc/GMT zone whose local time is now `local_hour` o'clock."""
    offset = (local_hour - datetime.now(UTC).hour) % 24
    if offset > 14:
        offset -= 24
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"  # Etc/GMT-3 is UTC+3


async def _set(db, user_id: int, **values: Any) -> None:  # type: ignore[no-untyped-def]
    async with db.transaction() as session:
        await session.execute(update(User).where(User.id == user_id).values(**values))


async def _reports(db) -> list[ReportRequest]:  # type: ignore[no-untyped-def]
    async with db.session(write=False) as session:
        return list(await session.scalars(
            select(ReportRequest).order_by(ReportRequest.period_end, ReportRequest.id)))


async def _task(db, title: str, user_id: int | None, **values: Any) -> None:  # type: ignore[no-untyped-def]
    async with db.transaction() as session:
        session.add(Task(title=title, assigned_user_id=user_id, **values))


async def _run_job(settings: Settings, redis_url: str) -> None:
    """Queue send_scheduled_reports as the cron does, and let the real ARQ worker run it."""
    pool = await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=QUEUE_NAME)
    try:
        assert await pool.enqueue_job("send_scheduled_reports") is not None
    finally:
        await pool.aclose()
    await run_worker_burst(settings, redis_url)


# --- the schedule as the user sets it ---------------------------------------------------------

async def test_report_schedule_in_me_staff_only(client, make_user) -> None:  # type: ignore[no-untyped-def]
    manager, employee, admin = (await make_user("manager"), await make_user("employee"),
                                await make_user("admin"))
    me = await (await client.get("/me", headers=manager.headers)).get_json()
    assert me["report_schedule"] == "weekly"  # the default for staff
    assert (await (await client.get("/me", headers=employee.headers)).get_json())[
        "report_schedule"] is None
    for value in ("daily", "off", "weekly"):
        response = await client.put("/me", headers=manager.headers, json={"report_schedule": value})
        assert response.status_code == 200
        assert (await response.get_json())["report_schedule"] == value
    for bad in (None, "hourly", 7):
        response = await client.put("/me", headers=manager.headers, json={"report_schedule": bad})
        assert response.status_code == 422, bad
        assert response.content_type == "application/problem+json"
    refused = await client.put("/me", headers=employee.headers,
                               json={"report_schedule": "daily", "timezone": "Asia/Tokyo"})
    assert refused.status_code == 422 and (await refused.get_json())["code"] == "no_report_schedule"
    after = await (await client.get("/me", headers=employee.headers)).get_json()
    assert after["report_schedule"] is None and after["timezone"] is None  # nothing changed

    # Demoted: no schedule; made staff again: weekly (the default) again.
    url = f"/users/{manager.id}"
    demoted = await client.put(url, headers=admin.headers, json={"role": "employee"})
    assert (await demoted.get_json())["report_schedule"] is None
    promoted = await client.put(url, headers=admin.headers, json={"role": "manager"})
    assert (await promoted.get_json())["report_schedule"] == "weekly"


def test_report_settings() -> None:
    assert Settings(_env_file=None).report_hour == 8
    assert Settings(_env_file=None).report_weekday_number == 0  # Monday
    assert Settings(_env_file=None, report_weekday=" Friday").report_weekday_number == 4
    with pytest.raises(ConfigError, match="TASKAPI_REPORT_WEEKDAY"):
        load_settings(_env_file=None, report_weekday="someday")
    with pytest.raises(ConfigError, match="TASKAPI_REPORT_HOUR"):
        load_settings(_env_file=None, report_hour=24)


# --- through the real worker ------------------------------------------------------------------

async def test_due_reports_sent_once_by_the_real_worker(smtp_settings, smtp_sink, redis_sync, redis_url, db, make_user) -> None:  # type: ignore[no-untyped-def]
    sink, _ = smtp_sink
    past, before = zone_at(18), zone_at(6)  # REPORT_HOUR 12 has passed / not yet come
    today = datetime.now(ZoneInfo(past)).date()
    settings = smtp_settings(report_hour=12, report_weekday=today.strftime("%A"))
    daily, weekly, off, early = [await make_user("manager") for _ in range(4)]
    admin, employee = await make_user("admin"), await make_user("employee")
    for user, schedule, zone in ((daily, "daily", past), (weekly, "weekly", past),
                                 (off, "off", past), (early, "daily", before),
                                 (admin, "daily", past)):
        await _set(db, user.id, report_schedule=schedule, timezone=zone)
    await _set(db, employee.id, timezone=past)
    await _task(db, "late one", employee.id, deadline=datetime.now(UTC) - timedelta(days=1))
    await _task(db, "done yesterday", employee.id, status=TaskStatus.COMPLETED,
                completed_at=datetime.now(UTC) - timedelta(hours=1))

    await _run_job(settings, redis_url)
    assert Counter(m["To"] for m in sink.messages) == {daily.email: 1, weekly.email: 1,
                                                       admin.email: 1}
    await _run_job(settings, redis_url)  # the next tick: nothing new
    assert len(sink.messages) == 3

    zone = ZoneInfo(past)
    start = datetime.combine(today - timedelta(days=1), datetime.min.time(), zone).replace(hour=12)
    end = start + timedelta(days=1)
    by_to = {m["To"]: m for m in sink.messages}
    message = by_to[daily.email]
    assert message["Subject"] == (f"Daily task report: {start:%Y-%m-%d %H:%M} to "
                                  f"{end:%Y-%m-%d %H:%M} ({past})")
    text = _text(message)
    assert f"Period: {start:%Y-%m-%d %H:%M %Z} to {end:%Y-%m-%d %H:%M %Z} ({past}, 24 h;" in text
    assert "All tasks now, whenever created: 2" in text and "late one" in text and "Overdue now (not completed, deadline passed): 1" in text
    weekly_text = _text(by_to[weekly.email])
    assert f"{start - timedelta(days=6):%Y-%m-%d %H:%M %Z} to {end:%Y-%m-%d %H:%M %Z}" in weekly_text
    assert f"({past}, 168 h;" in weekly_text

    reports = {r.requester_id: r for r in await _reports(db)}
    assert set(reports) == {daily.id, weekly.id, admin.id}
    report = reports[daily.id]
    assert report.id in text  # the email names the report it is
    app = create_app(settings)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        url = f"/reports/{report.id}"
        body = await (await client.get(url, headers=daily.headers)).get_json()
        assert body["trigger"] == "scheduled" and body["status"] == "complete"
        assert body["period_days"] == 1
        assert datetime.fromisoformat(body["period_start"]) == start
        assert datetime.fromisoformat(body["period_end"]) == end
        assert (await client.get(url, headers=weekly.headers)).status_code == 404
        assert (await client.get(url, headers=admin.headers)).status_code == 200
        # An on-demand report is its own job, not the scheduled one of the same length.
        asked = await client.post("/reports", headers=weekly.headers, json={"period_days": 7})
        job = await asked.get_json()
        assert job["job_id"] != reports[weekly.id].id and job["trigger"] == "requested"


async def test_jobs_run_and_list_from_the_cli(tmp_path: Path, smtp_sink, database_url: str, redis_url: str, redis_sync, db, make_user) -> None:  # type: ignore[no-untyped-def]
    sink, port = smtp_sink
    manager = await make_user("manager")
    await _set(db, manager.id, report_schedule="daily", timezone=zone_at(18))
    env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=database_url,
                  TASKAPI_REDIS_URL=redis_url, TASKAPI_SMTP_HOST="127.0.0.1",
                  TASKAPI_SMTP_PORT=str(port), TASKAPI_SMTP_STARTTLS="false",
                  TASKAPI_REPORT_HOUR="12")
    first = await asyncio.to_thread(run_cli, "jobs", "run", "send_scheduled_reports", env=env)
    assert first.returncode == 0, first.stderr
    assert "'sent': 1" in first.stdout
    again = await asyncio.to_thread(run_cli, "jobs", "run", "send_scheduled_reports", env=env)
    assert again.returncode == 0 and "none due" in again.stdout, again.stdout
    assert [m["To"] for m in sink.messages] == [manager.email]
    listed = await asyncio.to_thread(run_cli, "jobs", "list", env=env)
    assert ("send_scheduled_reports  cron hour=* minute=0,15,30,45; due at 12:00 local, "
            "weekly ones on monday") in listed.stdout, listed.stdout


async def test_two_workers_racing_send_each_report_once(smtp_settings, smtp_sink, redis_sync, db, make_user) -> None:  # type: ignore[no-untyped-def]
    from taskapi.core.db import Database
    from taskapi.services.scheduled_reports import send_scheduled_reports

    sink, _ = smtp_sink
    settings = smtp_settings(report_hour=12)
    managers = [await make_user("manager") for _ in range(12)]
    for manager in managers:
        await _set(db, manager.id, report_schedule="daily", timezone=zone_at(18))
    other_db = Database.from_url(settings.sqlalchemy_url)  # a second worker's connections
    now = datetime.now(UTC)
    try:
        async with mail.Mailer(settings) as one, mail.Mailer(settings) as two:
            results = await asyncio.gather(
                send_scheduled_reports(db, settings, one, now=now),
                send_scheduled_reports(other_db, settings, two, now=now),
                send_scheduled_reports(db, settings, one, now=now),
            )
    finally:
        await other_db.dispose()
    assert sum(r["sent"] for r in results) == 12
    assert Counter(m["To"] for m in sink.messages) == {m.email: 1 for m in managers}
    reports = await _reports(db)
    assert len(reports) == 12
    # The builder that lost the race does not leave the report looking unfinished.
    assert {r.status.value for r in reports} == {"complete"}


async def test_demoted_unapproved_deleted_or_off_before_the_build_get_none(smtp_settings, smtp_sink, redis_sync, db, make_user) -> None:  # type: ignore[no-untyped-def]
    from taskapi.services import scheduled_reports

    sink, _ = smtp_sink
    settings = smtp_settings(report_hour=12)
    kept, demoted, unapproved, deleted, off = [await make_user("manager") for _ in range(5)]
    for user in (kept, demoted, unapproved, deleted, off):
        await _set(db, user.id, report_schedule="daily", timezone=zone_at(18))
    now = datetime.now(UTC)
    # A worker that created the period's reports and died before building them.
    with mock.patch.object(scheduled_reports, "record_report_email",
                           side_effect=RuntimeError("killed")):
        async with mail.Mailer(settings) as mailer:
            with pytest.raises(RuntimeError, match="killed"):
                await scheduled_reports.send_scheduled_reports(db, settings, mailer, now=now)
    assert len(await _reports(db)) == 5 and sink.messages == []
    async with db.transaction() as session:
        (await session.get(User, demoted.id)).role = Role.EMPLOYEE  # type: ignore[union-attr]
        await session.delete(await session.get(User, deleted.id))
    await _set(db, unapproved.id, is_approved=False)
    await _set(db, off.id, report_schedule="off")

    from taskapi.services import reports

    async with mail.Mailer(settings) as mailer:
        # The next run builds and sends the report of the user still entitled to it ...
        outcome = await scheduled_reports.send_scheduled_reports(db, settings, mailer, now=now)
        assert outcome == Counter(sent=1)
        # ... and the sweeper, once they have been stuck a while, the others: it sends none.
        stuck = await reports.unfinished(db, now=now + reports.STUCK_AFTER * 2)
        assert len(stuck) == 3
        for report_id in stuck:
            note = await reports.build_and_send(db, settings, mailer, report_id)
            assert f"report {report_id} failed: " in note
    assert [m["To"] for m in sink.messages] == [kept.email]
    status = {r.requester_id: (r.status.value, r.error) for r in await _reports(db)}
    assert status == {
        kept.id: ("complete", None),
        demoted.id: ("failed", "requester is no longer an admin or manager"),
        unapproved.id: ("failed", "requester is no longer approved"),
        off.id: ("failed", "scheduled reports were turned off"),
    }  # the deleted user's report went with them
    assert await reports.unfinished(db, now=now + reports.STUCK_AFTER * 2) == []


# --- the clock, driven through the `now` seam ---------------------------------------------------

async def _drive(db, settings: Settings, start: datetime, days: int) -> list[datetime]:  # type: ignore[no-untyped-def]
    """Every cron tick (15 minutes) from `start` for `days` days; the ticks that sent."""
    from taskapi.services.scheduled_reports import send_scheduled_reports

    sent_at = []
    clock = start.astimezone(UTC)
    async with mail.Mailer(settings) as mailer:
        while clock < start.astimezone(UTC) + timedelta(days=days):
            if (await send_scheduled_reports(db, settings, mailer, now=clock))["sent"]:
                sent_at.append(clock)
            clock += timedelta(minutes=15)
    return sent_at


@pytest.mark.parametrize("zone,day", [
    ("Europe/Berlin", "2027-03-28"),      # north, spring forward: 02:00 → 03:00
    ("Europe/Berlin", "2027-10-31"),      # north, fall back: 03:00 → 02:00
    ("Australia/Sydney", "2027-10-03"),   # south, spring forward: 02:00 → 03:00
    ("Australia/Sydney", "2027-04-04"),   # south, fall back: 03:00 → 02:00
])
@pytest.mark.parametrize("hour", [2, 8])  # 2: the hour skipped or repeated that day
async def test_daily_and_weekly_reports_across_dst(smtp_settings, smtp_sink, redis_sync, db, make_user, zone: str, day: str, hour: int) -> None:  # type: ignore[no-untyped-def]
    sink, _ = smtp_sink
    transition = date.fromisoformat(day)
    tz = ZoneInfo(zone)
    settings = smtp_settings(timezone=zone, report_hour=hour,
                             report_weekday=transition.strftime("%A"))
    daily, weekly = await make_user("manager"), await make_user("admin")  # the server's zone
    await _set(db, daily.id, report_schedule="daily")
    start = datetime.combine(transition - timedelta(days=1), datetime.min.time(), tz)
    sent_at = await _drive(db, settings, start, days=3)

    def instant(days: int) -> datetime:
        return datetime.combine(transition + timedelta(days=days), datetime.min.time(),
                                tz).replace(hour=hour).astimezone(UTC)

    expected = [instant(n) for n in (-1, 0, 1)]
    reports = await _reports(db)
    mine = [r for r in reports if r.requester_id == daily.id]
    # One a day, each at the first tick at or after REPORT_HOUR local (in a skipped hour:
    # when the clock jumps; in a repeated one: the first time), never twice, none skipped.
    assert [r.created_at for r in mine] == [r.period_end for r in mine] == expected
    assert [r.period_start for r in mine] == [instant(-2), *expected[:2]]
    hours = [(r.period_end - r.period_start) / timedelta(hours=1) for r in mine]
    assert sorted(hours) in ([23, 24, 24], [24, 24, 25]), hours  # the day of the change
    (week,) = [r for r in reports if r.requester_id == weekly.id]
    assert (week.period_start, week.period_end, week.period_days) == (instant(-7), expected[1], 7)
    assert sent_at == expected
    assert Counter(m["To"] for m in sink.messages) == {daily.email: 3, weekly.email: 1}
    # The email says what it covers, with the day's real length.
    odd = next(r for r, h in zip(mine, hours, strict=True) if h != 24)
    (message,) = [m for m in sink.messages if odd.id in _text(m)]
    odd_hours = (odd.period_end - odd.period_start) // timedelta(hours=1)
    assert f"({zone}, {odd_hours} h;" in _text(message)


async def test_switching_to_daily_after_the_hour_sends_todays_at_once(smtp_settings, smtp_sink, redis_sync, db, make_user) -> None:  # type: ignore[no-untyped-def]
    from taskapi.services.scheduled_reports import send_scheduled_reports

    sink, _ = smtp_sink
    settings = smtp_settings(timezone="America/New_York", report_weekday="monday")
    manager = await make_user("manager")  # weekly, and it is a Wednesday
    noon = datetime(2027, 6, 16, 12, 0, tzinfo=ZoneInfo("America/New_York"))
    async with mail.Mailer(settings) as mailer:
        assert not (await send_scheduled_reports(db, settings, mailer, now=noon))["sent"]
        await _set(db, manager.id, report_schedule="daily")
        assert (await send_scheduled_reports(db, settings, mailer, now=noon))["sent"] == 1
        later = noon + timedelta(minutes=15)
        assert not (await send_scheduled_reports(db, settings, mailer, now=later))["sent"]
    (report,) = await _reports(db)
    assert report.period_end == noon.replace(hour=8)
    assert report.period_start == noon.replace(hour=8) - timedelta(days=1)
    assert len(sink.messages) == 1
    async with db.session(write=False) as session:
        (row,) = await session.scalars(select(EmailOutbox))
    assert row.dedupe_key == f"report:{report.id}"


def test_migration_gives_existing_staff_weekly_reports(tmp_path: Path) -> None:
    import sqlite3

    from alembic import command

    from taskapi.ops.migrate import alembic_config, upgrade

    path = tmp_path / "old.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url, "0004")
    with sqlite3.connect(path) as conn:
        for name, role in (("boss", "admin"), ("lead", "manager"), ("dev", "employee")):
            conn.execute("INSERT INTO users (username, email, password_hash, role, is_approved,"
                         " created_at, updated_at) VALUES (?, ?, 'x', ?, 1, '2026-01-01',"
                         " '2026-01-01')", (name, f"{name}@example.test", role))
        conn.execute("INSERT INTO report_requests (id, requester_id, period_days, status,"
                     " created_at) VALUES ('r1', 2, 7, 'complete', '2026-01-01')")
    upgrade(url)
    with sqlite3.connect(path) as conn:
        schedules = dict(conn.execute("SELECT username, report_schedule FROM users"))
        trigger = conn.execute("SELECT \"trigger\" FROM report_requests").fetchone()[0]
    assert schedules == {"boss": "weekly", "lead": "weekly", "dev": None}
    assert trigger == "requested"
    command.downgrade(alembic_config(url), "0004")
    with sqlite3.connect(path) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(users)")}
    assert "report_schedule" not in columns


async def test_a_report_whose_email_went_out_is_not_left_unfinished(smtp_settings, smtp_sink, redis_sync, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """A worker killed between marking the email sent and marking the report complete
    leaves it in_progress: the sweeper settles it and sends nothing (it rebuilt it every
    minute, for ever)."""
    from taskapi.services import reports
    from taskapi.services.scheduled_reports import send_scheduled_reports

    sink, _ = smtp_sink
    settings = smtp_settings(report_hour=12)
    manager = await make_user("manager")
    await _set(db, manager.id, report_schedule="daily", timezone=zone_at(18))
    now = datetime.now(UTC)
    async with mail.Mailer(settings) as mailer:
        assert (await send_scheduled_reports(db, settings, mailer, now=now))["sent"] == 1
        (report,) = await _reports(db)
        async with db.transaction() as session:
            await session.execute(update(ReportRequest).values(status="in_progress"))
        later = now + reports.STUCK_AFTER * 2
        assert await reports.unfinished(db, now=later) == [report.id]
        assert await reports.build_and_send(db, settings, mailer, report.id) == \
            f"report {report.id} already sent"
        assert await reports.unfinished(db, now=later) == []
    assert len(sink.messages) == 1
