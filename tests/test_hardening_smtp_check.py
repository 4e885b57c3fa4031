"""The worker checks its SMTP settings when it starts: connect, EHLO, STARTTLS offered when
TASKAPI_SMTP_STARTTLS is on. A mismatch is one log line naming the setting to change; the
check never holds up the worker (emails wait in the outbox and are retried)."""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support.faults import mail_env, start_worker, wait_for
from tests.support.processes import serve, stop_process
from tests.support.smtp import SMTPSink, smtp_server
from tests.support.values import PASSWORD


def _lines(log_path: Path, needle: str) -> list[str]:
    return [line for line in log_path.read_text().splitlines() if needle in line]


@contextlib.contextmanager
def _silent_server() -> Iterator[int]:
    """A TCP port that accepts connections (the kernel's backlog) and never says a word, like
    an implicit-TLS port (465) waiting for a ClientHello, or a firewall that swallows."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_starttls_on_against_a_plain_sink_is_one_line_naming_the_setting(tmp_path: Path, database_url: str, redis_url: str, redis_sync) -> None:  # type: ignore[no-untyped-def]
    """The default TASKAPI_SMTP_STARTTLS=true against a local plain sink (aiosmtpd, no
    STARTTLS): every email fails with aiosmtplib's "SMTP STARTTLS extension not supported by
    server", once per attempt. The worker says why, once, when it starts; /readyz stays about
    the database and Redis."""
    sink = SMTPSink()
    with smtp_server(sink) as port:
        env = mail_env(tmp_path, database_url, redis_url, port)
        env["TASKAPI_SMTP_STARTTLS"] = "true"
        log_path = tmp_path / "worker.log"
        worker = start_worker(env, log_path)
        try:
            with serve(env, "--no-worker") as base:
                response = httpx.post(base + "/register", json={
                    "username": "newbie", "email": "newbie@example.test", "password": PASSWORD})
                assert response.status_code == 202, response.text
                # The email is tried, and fails, more than once (retry base 1 s, sweep 2 s).
                wait_for(lambda: len(_lines(log_path, "STARTTLS extension not supported")) >= 2,
                         "two failed attempts at the welcome email", timeout=40)
                assert httpx.get(base + "/readyz").status_code == 200
            named = _lines(log_path, "TASKAPI_SMTP_STARTTLS")
            assert len(named) == 1, log_path.read_text()
            assert "does not offer STARTTLS" in named[0] and f"127.0.0.1:{port}" in named[0]
            assert "TASKAPI_SMTP_STARTTLS=false" in named[0]
            assert sink.messages == []
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(30) == 0
        finally:
            stop_process(worker)
    assert "Traceback" not in log_path.read_text()


def test_a_server_that_never_greets_does_not_hold_up_the_worker(tmp_path: Path, database_url: str, redis_url: str, redis_sync) -> None:  # type: ignore[no-untyped-def]
    """The check times out after a few seconds, in the background: the worker runs its jobs
    meanwhile, and then says what to look at (TLS from the first byte, host, port)."""
    with _silent_server() as port:
        env = mail_env(tmp_path, database_url, redis_url, port)
        log_path = tmp_path / "worker.log"
        started = time.monotonic()
        worker = start_worker(env, log_path)
        try:
            line = wait_for(lambda: _lines(log_path, "SMTP check"), "the SMTP check's line",
                            timeout=40)[0]
            log = log_path.read_text()
            # A job ran before the check gave up: the check did not delay the start.
            first_job = log.find("cron:deliver_pending_emails")
            assert 0 <= first_job < log.find("SMTP check"), log
            assert f"127.0.0.1:{port}" in line and "no greeting" in line
            assert "TASKAPI_SMTP_TLS" in line and "TASKAPI_SMTP_HOST" in line
            assert time.monotonic() - started < 30
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(30) == 0
        finally:
            stop_process(worker)


def test_a_refused_connection_names_host_and_port(tmp_path: Path, database_url: str, redis_url: str, redis_sync) -> None:  # type: ignore[no-untyped-def]
    with _silent_server() as port:
        pass  # closed again: nothing listens there now
    env = mail_env(tmp_path, database_url, redis_url, port)
    log_path = tmp_path / "worker.log"
    worker = start_worker(env, log_path)
    try:
        line = wait_for(lambda: _lines(log_path, "SMTP check"), "the SMTP check's line")[0]
        assert f"cannot connect to 127.0.0.1:{port}" in line
        assert "TASKAPI_SMTP_HOST" in line and "TASKAPI_SMTP_PORT" in line
        assert "outbox" in line  # what happens to the emails meanwhile
    finally:
        stop_process(worker)


def test_settings_that_match_the_server_say_so_and_warn_of_nothing(tmp_path: Path, database_url: str, redis_url: str, redis_sync) -> None:  # type: ignore[no-untyped-def]
    with smtp_server(SMTPSink()) as port:
        env = mail_env(tmp_path, database_url, redis_url, port)  # STARTTLS off: a plain sink
        log_path = tmp_path / "worker.log"
        worker = start_worker(env, log_path)
        try:
            line = wait_for(lambda: _lines(log_path, "SMTP check"), "the SMTP check's line")[0]
            assert f"127.0.0.1:{port}" in line and "ok" in line and "WARNING" not in line
        finally:
            stop_process(worker)
