"""Outbox hardening (issue #14).

Finding 1: one email that cannot be built or marked stays with itself: it fails on its own,
shows in `taskapi jobs list`, and every other email of its batch arrives exactly once.
Finding 11: an email that depends on its recipient's state (still there, still approved,
still assigned, still staff) is not sent once that state is gone; it ends cancelled.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from taskapi import mail
from taskapi.app import create_app
from taskapi.jobs.emails import deliver_pending_emails
from taskapi.models import (
    EmailOutbox,
    EmailStatus,
    ReportRequest,
    ReportStatus,
    Role,
    User,
    utcnow,
)
from taskapi.services import outbox, reports
from tests.support.faults import SMTPServer
from tests.support.ports import free_port
from tests.support.processes import cli_env, run_cli
from tests.support.smtp import SMTPSink
from tests.support.worker import run_worker_burst

EVIL = "x@evil.example"


@pytest.fixture
def smtp_settings(make_settings, smtp_sink):  # type: ignore[no-untyped-def]
    _, port = smtp_sink
    return make_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False,
                         mail_from="taskapi <noreply@taskapi.example>")


async def _rows(db: Any) -> dict[str, EmailOutbox]:
    async with db.session(write=False) as session:
        rows = await session.scalars(select(EmailOutbox).order_by(EmailOutbox.id))
        return {row.dedupe_key: row for row in rows}


async def _notices(db: Any, settings: Any, *keys: str) -> None:
    async with db.transaction() as session:
        for key in keys:
            await outbox.add_email(session, settings, kind="notice", dedupe_key=key,
                                   to=f"{key}@example.test", template="approved",
                                   username=key, role="employee", email="someone@example.test")


async def _poison(db: Any, settings: Any, key: str) -> None:
    """A row that cannot be made into a message: a line break in its recipient (recorded
    by an older version, by hand, or by any path that skipped validation)."""
    row = outbox.email_row(settings, kind="notice", dedupe_key=key,
                           to=f"victim@example.test\r\nBcc: {EVIL}", template="approved",
                           username="victim", role="employee", email="someone@example.test")
    async with db.transaction() as session:
        await session.execute(outbox.insert_ignore(session.get_bind().dialect.name, [row]))


def _delivered(sink: Any) -> Counter[str]:
    return Counter(message["Message-ID"] for message in sink.messages)


# --- finding 1: one bad email poisons the outbox ----------------------------------------

async def test_a_row_that_cannot_be_built_fails_alone_and_the_batch_arrives_once(smtp_settings, smtp_sink, db, database_url, redis_url, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sink, _ = smtp_sink
    await _notices(db, smtp_settings, "clean0", "clean1")
    await _poison(db, smtp_settings, "poisoned")
    await _notices(db, smtp_settings, "clean2", "clean3")
    ctx = {"db": db, "settings": smtp_settings}
    for _ in range(4):  # the sweeper, minute after minute
        await deliver_pending_emails(ctx)

    rows = await _rows(db)
    clean = [rows[f"clean{i}"] for i in range(4)]
    assert _delivered(sink) == Counter({row.message_id: 1 for row in clean})
    assert all(row.status == EmailStatus.SENT for row in clean)
    bad = rows["poisoned"]
    assert bad.status == EmailStatus.FAILED and bad.attempts == 1  # at once: not transient
    assert bad.last_error and bad.last_error.startswith("ValueError: ")
    assert all(EVIL not in str(m) for m in sink.messages)

    env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=database_url,
                  TASKAPI_REDIS_URL=redis_url)
    listed = await asyncio.to_thread(run_cli, "jobs", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "failed=1" in listed.stdout and "sent=4" in listed.stdout
    line = next(line for line in listed.stdout.splitlines() if "poisoned" in line)
    assert line.split()[0] == "failed" and "ValueError: Header values" in line
    assert f"to=victim@example.test\\r\\nBcc: {EVIL}" in line  # shown, not acted on


async def test_smtp_away_then_back_a_poisoned_row_does_not_hold_back_the_rest(make_settings, db) -> None:  # type: ignore[no-untyped-def]
    sink = SMTPSink()
    smtp = SMTPServer(sink)  # not started yet: connections are refused
    settings = make_settings(smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_starttls=False,
                             email_retry_base=1)
    await _notices(db, settings, "early")
    await _poison(db, settings, "poisoned")
    await _notices(db, settings, "late0", "late1")
    now = utcnow()
    away = await outbox.deliver_due(db, settings, now=now)
    assert away == Counter({"retry": 3, "failed": 1})
    smtp.start()
    try:
        for minute in range(1, 4):
            await outbox.deliver_due(db, settings, now=now + timedelta(minutes=minute))
    finally:
        smtp.stop()
    rows = await _rows(db)
    good = [rows[key] for key in ("early", "late0", "late1")]
    assert _delivered(sink) == Counter({row.message_id: 1 for row in good})
    assert rows["poisoned"].status == EmailStatus.FAILED


async def test_a_failure_after_the_server_accepted_a_message_sends_nothing_twice(smtp_settings, smtp_sink, db) -> None:  # type: ignore[no-untyped-def]
    sink, _ = smtp_sink
    await _notices(db, smtp_settings, *(f"m{i}" for i in range(5)))
    real = db.transaction
    calls = 0

    def locked_once(*args: Any, **kwargs: Any) -> Any:
        # Call 1 claims the batch; call 2 is the first message's own "sent" mark.
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OperationalError("UPDATE email_outbox", {}, Exception("database is locked"))
        return real(*args, **kwargs)

    with mock.patch.object(db, "transaction", locked_once):
        first = await outbox.deliver_due(db, smtp_settings)
    assert first == Counter({"sent": 5})
    for minute in range(1, 4):
        await outbox.deliver_due(db, smtp_settings, now=utcnow() + timedelta(minutes=minute))
    rows = await _rows(db)
    assert _delivered(sink) == Counter({row.message_id: 1 for row in rows.values()})
    assert all(row.status == EmailStatus.SENT for row in rows.values())


async def test_a_report_that_cannot_be_built_does_not_stop_the_sweep(smtp_settings, smtp_sink, db, make_user) -> None:  # type: ignore[no-untyped-def]
    sink, _ = smtp_sink
    manager = await make_user("manager")
    async with db.transaction() as session:
        session.add(ReportRequest(id="stuck", requester_id=manager.id, period_days=7,
                                  created_at=utcnow() - timedelta(minutes=10)))
    await _notices(db, smtp_settings, "waiting")
    with mock.patch.object(reports, "_summary", side_effect=RuntimeError("broken summary")):
        result = await deliver_pending_emails({"db": db, "settings": smtp_settings})
    assert "'sent': 1" in result
    assert [m["To"] for m in sink.messages] == ["waiting@example.test"]


async def test_crlf_in_a_task_title_gives_a_one_line_subject(smtp_settings, smtp_sink, redis_sync, redis_url, make_user) -> None:  # type: ignore[no-untyped-def]
    sink, _ = smtp_sink
    manager, employee = await make_user("manager"), await make_user("employee")
    app = create_app(smtp_settings)
    async with app.test_app() as test_app:
        response = await test_app.test_client().post("/tasks", headers=manager.headers, json={
            "title": f"hello\r\nBcc: {EVIL}", "assigned_user_id": employee.id})
        assert response.status_code == 201
    worker = await run_worker_burst(smtp_settings, redis_url)
    assert worker.jobs_failed == 0
    assert len(sink.messages) == 1
    message = sink.messages[0]
    assert message["Subject"] == f"New task for you: hello Bcc: {EVIL}"
    assert message["Bcc"] is None and message["To"] == employee.email
    assert sink.recipients == [[employee.email]]


@pytest.mark.parametrize("subject", [
    f"a\r\nBcc: {EVIL}\r\nb", "a\nb", "a\rb", "a\u2028b", "a\x00b", "a\x1b[31mb", "a\x85b",
])
def test_header_text_is_one_line(smtp_settings, subject: str) -> None:  # type: ignore[no-untyped-def]
    message = mail.build_message(smtp_settings, to="a@example.test", subject=subject,
                                 text="t", html="<p>h</p>", message_id="<1@example.test>")
    folded = str(message["Subject"])
    assert folded.startswith("a") and folded.endswith("b") and folded.isprintable()
    assert b"\r\nBcc" not in bytes(message)
    assert mail.render("assigned", username="u", title=subject, status="pending",
                       deadline=None, description="", assigner="m", overdue=False,
                       task_id=1).subject == f"New task for you: {folded}"


# --- finding 11: the recipient's state is checked when the email is sent ------------------

@pytest.mark.parametrize("then,reason", [
    ("deleted", "recipient no longer exists"), ("unapproved", "recipient not approved")])
async def test_approved_then_deleted_before_the_worker_runs_sends_nothing(smtp_settings, smtp_sink, redis_sync, redis_url, db, make_user, then: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    sink, _ = smtp_sink
    admin, newcomer = await make_user("admin"), await make_user("employee", approved=False)
    app = create_app(smtp_settings)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        approved = await client.put(f"/users/{newcomer.id}/approve", headers=admin.headers)
        assert approved.status_code == 200
        if then == "deleted":
            changed = await client.delete(f"/users/{newcomer.id}", headers=admin.headers)
        else:
            changed = await client.put(f"/users/{newcomer.id}", headers=admin.headers,
                                       json={"is_approved": False})
        assert changed.status_code in (200, 204)
    await run_worker_burst(smtp_settings, redis_url)
    await deliver_pending_emails({"db": db, "settings": smtp_settings})  # and the sweeper
    assert sink.messages == []
    row = (await _rows(db))[f"approved:{newcomer.id}"]
    assert (row.status, row.last_error) == (EmailStatus.CANCELLED, reason)
    # `taskapi jobs list` shows it among the emails that will not be sent, with the reason.
    assert await outbox.given_up(db) == [("cancelled", row.dedupe_key, newcomer.email, reason)]


async def test_reassigned_or_deleted_task_sends_only_the_current_assignment(smtp_settings, smtp_sink, redis_sync, redis_url, db, make_user) -> None:  # type: ignore[no-untyped-def]
    sink, _ = smtp_sink
    admin, first, second = (await make_user("admin"), await make_user("employee"),
                            await make_user("employee"))
    app = create_app(smtp_settings)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        moved = await (await client.post("/tasks", headers=admin.headers, json={
            "title": "moved", "assigned_user_id": first.id})).get_json()
        await client.put(f"/task/{moved['id']}/assign", headers=admin.headers,
                         json={"user_id": second.id})
        gone = await (await client.post("/tasks", headers=admin.headers, json={
            "title": "gone", "assigned_user_id": first.id})).get_json()
        assert (await client.delete(f"/task/{gone['id']}", headers=admin.headers)).status_code == 204
    await run_worker_burst(smtp_settings, redis_url)
    assert [(m["To"], m["Subject"]) for m in sink.messages] == [
        (second.email, "New task for you: moved")]
    rows = await _rows(db)
    assert rows[f"assign:{moved['id']}:{first.id}:1"].last_error == "task reassigned"
    assert rows[f"assign:{gone['id']}:{first.id}:1"].last_error == "task no longer exists"


async def test_report_for_a_requester_no_longer_staff_is_not_sent(smtp_settings, smtp_sink, redis_sync, redis_url, db, make_user) -> None:  # type: ignore[no-untyped-def]
    sink, _ = smtp_sink
    admin, manager = await make_user("admin"), await make_user("manager")
    app = create_app(smtp_settings)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        job = await (await client.post("/reports", headers=manager.headers)).get_json()
        demoted = await client.put(f"/users/{manager.id}", headers=admin.headers,
                                   json={"role": "employee"})
        assert demoted.status_code == 200
    await run_worker_burst(smtp_settings, redis_url)
    assert sink.messages == []  # a summary of every task, to someone no longer allowed it
    async with db.session(write=False) as session:
        report = await session.get(ReportRequest, job["job_id"])
    assert report is not None and report.status == ReportStatus.FAILED
    # The builder refuses it first now (services/reports.py); the outbox rule is the backstop.
    assert report.error == "requester is no longer an admin or manager"
    assert await reports.unfinished(db, now=utcnow() + timedelta(hours=1)) == []


@pytest.mark.parametrize("kind", ["welcome", "reminder", "report"])
async def test_each_kind_is_not_sent_to_a_deleted_user(smtp_settings, smtp_sink, db, make_user, kind: str) -> None:  # type: ignore[no-untyped-def]
    sink, _ = smtp_sink
    user = await make_user("manager")
    await _notices(db, smtp_settings, "bystander")
    async with db.transaction() as session:
        await outbox.add_email(session, smtp_settings, kind=kind, dedupe_key=f"{kind}:x",
                               to=user.email, user_id=user.id, template="approved",
                               username="u", role="manager", email="someone@example.test")
        await session.delete(await session.get(User, user.id))
    assert (await outbox.deliver_due(db, smtp_settings)) == Counter({"sent": 1, "cancelled": 1})
    assert [m["To"] for m in sink.messages] == ["bystander@example.test"]
    row = (await _rows(db))[f"{kind}:x"]
    assert (row.status, row.last_error) == (EmailStatus.CANCELLED, "recipient no longer exists")


async def test_a_retry_is_checked_again(make_settings, smtp_sink, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """SMTP down at the first try; the user is unapproved meanwhile; the retry sends nothing."""
    sink, port = smtp_sink
    down = make_settings(smtp_host="127.0.0.1", smtp_port=free_port(), smtp_starttls=False)
    up = make_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False)
    user = await make_user("employee")
    async with db.transaction() as session:
        await outbox.add_email(session, up, kind="reminder", dedupe_key="reminder:r",
                               to=user.email, user_id=user.id, template="approved",
                               username="u", role="employee", email="someone@example.test")
    now = utcnow()
    assert await outbox.deliver_due(db, down, now=now) == Counter({"retry": 1})
    async with db.transaction() as session:
        await session.execute(update(User).where(User.id == user.id).values(
            is_approved=False, role=Role.EMPLOYEE))
    assert await outbox.deliver_due(db, up, now=now + timedelta(hours=1)) == Counter(
        {"cancelled": 1})
    assert sink.messages == []
