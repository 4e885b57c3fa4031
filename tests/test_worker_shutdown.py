"""SIGTERM to a real `taskapi worker` in the middle of sending: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from taskapi import mail
from taskapi.models import EmailOutbox, EmailStatus
from taskapi.services import outbox
from tests.support.processes import cli_env, outside_checkout
from tests.support.smtp import SMTPSink, smtp_server


class SlowSink(SMTPSink):
    """Takes `delay` seconds to accept each message (a slow or distant SMTP server)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.receiving = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.receiving.set()
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def slow_sink() -> Iterator[tuple[SlowSink, int]]:
    sink = SlowSink(delay=3.0)
    with smtp_server(sink) as port:
        yield sink, port


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "taskapi", "worker"], env=env, cwd=outside_checkout(env),
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


async def _statuses(db: Any) -> dict[str, str]:
    async with db.session(write=False) as session:
        rows = await session.execute(select(EmailOutbox.to_address, EmailOutbox.status))
        return {to: EmailStatus(status).value for to, status in rows}


async def _register(client: Any, name: str) -> None:
    response = await client.post("/register", json={
        "username": name, "email": f"{name}@example.test", "password": "long enough"})
    assert response.status_code == 202


async def test_sigterm_mid_send_finishes_the_job_and_the_rest_waits_for_the_restart(client, db, slow_sink, tmp_path: Path, database_url: str, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    sink, port = slow_sink
    env = cli_env(tmp_path / "worker", TASKAPI_DATABASE_URL=database_url,
                  TASKAPI_REDIS_URL=redis_url, TASKAPI_SMTP_HOST="127.0.0.1",
                  TASKAPI_SMTP_PORT=str(port), TASKAPI_SMTP_STARTTLS="false")
    log = tmp_path / "worker.log"
    await _register(client, "ann")  # recorded and queued; no worker runs yet
    worker = _start_worker(env, log)
    try:
        assert await asyncio.to_thread(sink.receiving.wait, 30), log.read_text()
        worker.send_signal(signal.SIGTERM)  # ann's message is on the wire, 3 s from accepted
        await _register(client, "bob")  # queued while the worker is stopping
        assert await asyncio.to_thread(worker.wait, 40) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
    # The running job finished: ann's email was accepted and marked sent; bob's was not taken.
    assert [m["To"] for m in sink.messages] == ["ann@example.test"]
    assert await _statuses(db) == {"ann@example.test": "sent", "bob@example.test": "pending"}

    worker = _start_worker(env, log)  # the restart
    try:
        deadline = time.monotonic() + 30
        while (await _statuses(db))["bob@example.test"] != "sent":
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)  # room for a (wrong) second delivery to show up
    finally:
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 40) == 0
    assert Counter(m["To"] for m in sink.messages) == {"ann@example.test": 1,
                                                       "bob@example.test": 1}


async def test_a_cancelled_batch_keeps_what_was_sent_and_releases_the_rest(smtp_sink, make_settings, db, make_user) -> None:  # type: ignore[no-untyped-def]
    """A job cancelled mid-batch (the shutdown budget ran out): the emails already accepted
    are marked sent, the others go straight back to pending, not stuck claimed for minutes."""
    sink, port = smtp_sink
    settings = make_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False)
    users = [await make_user("employee") for _ in range(4)]
    async with db.transaction() as session:
        for user in users:
            await outbox.add_email(session, settings, kind="approved", dedupe_key=f"w:{user.id}",
                                   to=user.email, template="approved", user_id=user.id,
                                   username=f"user{user.id}", email=user.email)
    first_sent = asyncio.Event()
    real_send = mail.Mailer.send
    calls = 0

    async def send_then_stall(self: mail.Mailer, message: Any, kind: str = "email") -> None:
        nonlocal calls
        calls += 1
        if calls > 1:
            await asyncio.sleep(60)  # the rest hang: cancelled below
        await real_send(self, message, kind)
        first_sent.set()

    mailer = mail.Mailer(settings, connections=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mail.Mailer, "send", send_then_stall)
        job = asyncio.ensure_future(outbox.deliver(db, settings, mailer))
        await asyncio.wait_for(first_sent.wait(), 10)
        await asyncio.sleep(0.1)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
    await mailer.close()
    statuses = Counter((await _statuses(db)).values())
    assert statuses == {"sent": 1, "pending": 3}
    async with db.session(write=False) as session:
        attempts = (await session.scalars(select(EmailOutbox.attempts).where(
            EmailOutbox.status == EmailStatus.PENDING))).all()
    assert attempts == [0, 0, 0]  # an interrupted send is not a failed attempt

    async with mail.Mailer(settings) as again:
        assert await outbox.deliver(db, settings, again) == {"sent": 3}
    assert sorted(m["To"] for m in sink.messages) == sorted(u.email for u in users)
