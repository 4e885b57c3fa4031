"""Fixtures: the app from test settings, a fresh database per test, real Redis.

Database: TASKAPI_TEST_DATABASE_URL (PostgreSQL) when set, else a SQLite file per test.
Redis: TASKAPI_TEST_REDIS_URL, else 127.0.0.1:6379 (db 15) if it answers, else an embedded
redis-server started once for the session (TASKAPI_TEST_REDIS_URL=embedded forces that).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from redis import Redis as SyncRedis
from sqlalchemy import text

from settings import Settings
from taskapi.app import create_app
from taskapi.db import create_engine
from taskapi.embedded_redis import EmbeddedRedis
from taskapi.migrate import upgrade
from taskapi.models import Base

TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"
PG_URL = os.environ.get("TASKAPI_TEST_DATABASE_URL")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("TASKAPI_TEST_REDIS_URL")
    if url and url != "embedded":
        yield url
    elif url != "embedded" and _port_open("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379/15"
    else:
        with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as embedded:
            yield embedded.url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file; each test gets a copy (migrations run once, tested always)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_migrated() -> str | None:
    if not PG_URL:
        return None

    async def _reset() -> None:
        engine = create_engine(PG_URL)
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await engine.dispose()

    asyncio.run(_reset())
    upgrade(PG_URL)
    return PG_URL


async def _truncate_pg(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await engine.dispose()


@pytest.fixture
def database_url(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if PG_URL:
        url = request.getfixturevalue("pg_migrated")
        asyncio.run(_truncate_pg(url))
        return str(url)
    template: Path = request.getfixturevalue("sqlite_template")
    path = tmp_path / "taskapi.db"
    shutil.copyfile(template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def make_settings(tmp_path: Path, database_url: str, redis_url: str) -> Any:
    def _make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "env": "test",
            "data_dir": tmp_path / "data",
            "database_url": database_url,
            "redis_url": redis_url,
            "secret_key": TEST_SECRET,
            "rate_limit_default": "100000/minute",
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return _make


@pytest.fixture
def settings(make_settings: Any) -> Settings:
    return make_settings()


@pytest.fixture
def redis_sync(redis_url: str) -> Iterator[SyncRedis]:
    client = SyncRedis.from_url(redis_url)
    client.flushdb()  # each test starts from an empty test database
    yield client
    client.close()


@pytest.fixture
async def app(settings: Settings, redis_sync: SyncRedis) -> AsyncIterator[Quart]:
    app = create_app(settings)
    async with app.test_app() as test_app:
        yield test_app.app  # type: ignore[misc]


@pytest.fixture
def client(app: Quart) -> Any:
    return app.test_client()


# --- accounts -----------------------------------------------------------------------------

PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def password_hash() -> str:
    from taskapi.passwords import _hasher

    return _hasher().hash(PASSWORD)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Any]:
    from taskapi.db import Database

    database = Database.from_url(database_url)
    yield database
    await database.dispose()


class Account:
    """A user made directly in the database, with a live session and its tokens."""

    def __init__(self, user_id: int, email: str, role: str, access: str, refresh: str) -> None:
        self.id, self.email, self.role = user_id, email, role
        self.access, self.refresh = access, refresh

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access}"}


@pytest.fixture
def make_user(db: Any, settings: Settings, password_hash: str) -> Any:
    from datetime import timedelta

    from taskapi import tokens
    from taskapi.models import AuthSession, Role, User, utcnow

    counter = iter(range(1, 10_000))

    async def _make(role: str = "employee", approved: bool = True,
                    name: str | None = None) -> Account:
        name = name or f"{role}{next(counter)}"
        email = f"{name}@example.test"
        sid, jti = tokens.new_id(), tokens.new_id()
        async with db.transaction() as session:
            user = User(username=name, email=email, password_hash=password_hash,
                        role=Role(role), is_approved=approved)
            session.add(user)
            await session.flush()
            session.add(AuthSession(id=sid, user_id=user.id, refresh_jti=jti,
                                    expires_at=utcnow() + timedelta(days=1)))
            user_id = user.id
        key = settings.signing_key()
        access = tokens.encode(key, user_id=user_id, sid=sid, jti=tokens.new_id(),
                               type="access", ttl=900)
        refresh = tokens.encode(key, user_id=user_id, sid=sid, jti=jti, type="refresh",
                                ttl=3600)
        return Account(user_id, email, role, access, refresh)

    return _make


# --- mail -----------------------------------------------------------------------------------

class SMTPSink:
    """A real SMTP server (aiosmtpd) on loopback that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        from email import message_from_bytes, policy

        message = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append(message)
        return "250 OK"


@contextlib.contextmanager
def smtp_server(handler: SMTPSink) -> Iterator[int]:
    """aiosmtpd with `handler` on a free loopback port; yields the port."""
    from aiosmtpd.controller import Controller

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@pytest.fixture
def smtp_sink() -> Iterator[tuple[SMTPSink, int]]:
    sink = SMTPSink()
    with smtp_server(sink) as port:
        yield sink, port


async def run_worker_burst(settings: Settings, redis_url: str) -> Any:
    """Run the real ARQ worker until the queue is empty."""
    from taskapi.worker_runner import build_worker

    # No cron jobs: a minute boundary during the test must not run the sweeper behind its back.
    worker = build_worker(settings, redis_url, burst=True, handle_signals=False, poll_delay=0.05,
                          cron_jobs=[])
    try:
        await worker.async_run()
    finally:
        await worker.close()
    return worker
