"""Email faults with a real `taskapi worker` process: SMTP down for a while, and the worker
killed (SIGKILL) in the middle of a batch. Every email arrives exactly once."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from taskapi.models import EmailOutbox, EmailStatus
from taskapi.services import outbox
from tests.support.faults import (
    GatedSMTPSink,
    SMTPServer,
    eventually,
    mail_env,
    start_worker,
    wait_for,
)
from tests.support.processes import run_cli, serve, stop_process


async def _rows(db: Any) -> list[EmailOutbox]:
    async with db.session(write=False) as session:
        return list(await session.scalars(select(EmailOutbox).order_by(EmailOutbox.id)))


def _assert_each_once(sink: GatedSMTPSink, rows: list[EmailOutbox]) -> None:
    assert all(row.status == EmailStatus.SENT for row in rows)
    received = Counter(message["Message-ID"] for message in sink.messages)
    assert received == Counter({row.message_id: 1 for row in rows})


async def test_mail_queued_while_smtp_is_down_is_delivered_once_when_it_returns(tmp_path: Path, database_url: str, redis_url: str, redis_sync, db) -> None:  # type: ignore[no-untyped-def]
    sink = GatedSMTPSink()
    smtp = SMTPServer(sink)  # not started: connections are refused
    env = mail_env(tmp_path, database_url, redis_url, smtp.port)
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        with serve(env, "--no-worker") as base:
            for i in range(6):
                response = httpx.post(base + "/register", json={
                    "username": f"newcomer{i}", "email": f"newcomer{i}@example.test",
                    "password": "long enough password"})
                assert response.status_code == 202

        async def all_failed_once() -> bool:
            rows = await _rows(db)
            return len(rows) == 6 and all(r.status == EmailStatus.PENDING and r.attempts >= 1
                                          and r.last_error for r in rows)

        await eventually(all_failed_once, "every welcome email to fail against the dead SMTP")
        smtp.start()

        async def all_sent() -> list[EmailOutbox] | None:
            rows = await _rows(db)
            return rows if all(r.status == EmailStatus.SENT for r in rows) else None

        rows = await eventually(all_sent, "the sweeper to send everything once SMTP is back")
        # Another sweep finds nothing to send.
        extra = await asyncio.to_thread(run_cli, "jobs", "run", "deliver_pending_emails",
                                        env=env)
        assert extra.returncode == 0, extra.stderr
        _assert_each_once(sink, await _rows(db))
        assert {m["To"] for m in sink.messages} == {r.to_address for r in rows}
    finally:
        stop_process(worker)
        smtp.stop()


async def test_worker_killed_mid_batch_rerun_completes_without_duplicates(tmp_path: Path, database_url: str, redis_url: str, redis_sync, db, settings, make_user) -> None:  # type: ignore[no-untyped-def]
    sink = GatedSMTPSink(accept_first=5)  # then the server stalls
    smtp = SMTPServer(sink)
    smtp.start()
    env = mail_env(tmp_path, database_url, redis_url, smtp.port, TASKAPI_EMAIL_CLAIM_TIMEOUT="3")
    people = [await make_user("employee", name=f"person{i}") for i in range(20)]
    async with db.transaction() as session:
        for i, person in enumerate(people):  # an approval email goes only to an approved user
            await outbox.add_email(session, settings, kind="approved", dedupe_key=f"batch:{i}",
                                   to=person.email, user_id=person.id, template="approved",
                                   username=f"person{i}", email=person.email)
    first = start_worker(env, tmp_path / "worker-1.log")
    try:
        async def five_sent() -> bool:
            rows = await _rows(db)
            return sum(r.status == EmailStatus.SENT for r in rows) == 5

        await eventually(five_sent, "the first five emails to be accepted and marked sent")
        rows = await _rows(db)
        assert Counter(r.status for r in rows) == {EmailStatus.SENT: 5, EmailStatus.SENDING: 15}
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        stop_process(first)
        if first.returncode != -signal.SIGKILL:
            sink.release.set()
            smtp.stop()
    # The stalled deliveries end once the SMTP server has seen their client go away (the
    # kernel closes a killed process's sockets at once; aiosmtpd notices a little later).
    wait_for(sink.held_clients_gone, "the SMTP server to see the killed worker disconnect")
    sink.release.set()
    sink.accept_first = None
    second = start_worker(env, tmp_path / "worker-2.log")
    try:
        async def all_sent() -> bool:
            return all(r.status == EmailStatus.SENT for r in await _rows(db))

        await eventually(all_sent, "the rerun to send what the killed worker had claimed")
        extra = await asyncio.to_thread(run_cli, "jobs", "run", "deliver_pending_emails",
                                        env=env)
        assert extra.returncode == 0, extra.stderr
        _assert_each_once(sink, await _rows(db))
    finally:
        stop_process(second)
        sink.release.set()
        smtp.stop()
