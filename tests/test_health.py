"""Liveness and readiness against real dependencies."""

from __future__ import annotations

from taskapi.app import create_app
from tests.support.ports import free_port


async def test_healthz_and_readyz_ok(client) -> None:  # type: ignore[no-untyped-def]
    assert (await (await client.get("/healthz")).get_json()) == {"status": "ok"}
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert (await response.get_json())["checks"] == {"database": "ok", "redis": "ok"}


async def test_readyz_503_names_redis_when_down(make_settings, redis_sync) -> None:  # type: ignore[no-untyped-def]
    app = create_app(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.content_type == "application/problem+json"
        body = await response.get_json()
        assert body["checks"] == {"database": "ok", "redis": "down"}
        assert "redis" in body["detail"]
        assert (await client.get("/healthz")).status_code == 200


async def test_readyz_503_names_database_when_down(make_settings, redis_sync, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A directory where the database file should be: SQLite cannot open it.
    (tmp_path / "isdir.db").mkdir()
    url = f"sqlite+aiosqlite:///{tmp_path / 'isdir.db'}"
    app = create_app(make_settings(database_url=url))
    async with app.test_app() as test_app:
        response = await test_app.test_client().get("/readyz")
        assert response.status_code == 503
        assert (await response.get_json())["checks"]["database"] == "down"
