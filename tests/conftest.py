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
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from redis import Redis as SyncRedis
from sqlalchemy import text

from taskapi.app import create_app
from taskapi.config import Settings
from taskapi.core.db import create_engine
from taskapi.core.embedded_redis import EmbeddedRedis
from taskapi.models import Base
from taskapi.ops.migrate import upgrade
from tests.support.ports import port_open
from tests.support.smtp import SMTPSink, smtp_server
from tests.support.values import PASSWORD, TEST_SECRET

PG_URL = os.environ.get("TASKAPI_TEST_DATABASE_URL")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("TASKAPI_TEST_REDIS_URL")
    if url and url != "embedded":
        yield url
    elif url != "embedded" and port_open("127.0.0.1", 6379):
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
def app_with(make_settings: Any, redis_sync: SyncRedis) -> Any:
    """`async with app_with(**settings) as app:` an app started with these settings overrides."""

    @contextlib.asynccontextmanager
    async def _app(**overrides: Any) -> AsyncIterator[Quart]:
        app = create_app(make_settings(**overrides))
        async with app.test_app() as test_app:
            yield test_app.app  # type: ignore[misc]

    return _app


@pytest.fixture
def client(app: Quart) -> Any:
    return app.test_client()


# --- accounts -----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def password_hash() -> str:
    from taskapi.core.passwords import _hasher

    return _hasher().hash(PASSWORD)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Any]:
    from taskapi.core.db import Database

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

    from taskapi.core import tokens
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

@pytest.fixture
def smtp_sink() -> Iterator[tuple[SMTPSink, int]]:
    sink = SMTPSink()
    with smtp_server(sink) as port:
        yield sink, port
