"""Every error answers application/problem+json; a 500 shows no traceback."""

from __future__ import annotations

import logging

import pytest
from pydantic import BaseModel, Field
from quart import Quart
from quart_schema import validate_request
from sqlalchemy import text

from taskapi.app import create_app

PROBLEM = "application/problem+json"


class Echo(BaseModel):
    name: str = Field(min_length=1)


@pytest.fixture
async def app(settings, redis_sync):  # type: ignore[no-untyped-def]
    app: Quart = create_app(settings)

    @app.post("/_echo")
    @validate_request(Echo)
    async def echo(data: Echo) -> dict[str, str]:
        return {"name": data.name}

    @app.get("/_boom")
    async def boom() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    async with app.test_app() as test_app:
        yield test_app.app


def _is_problem(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status
    assert response.content_type == PROBLEM
    return response


async def test_unknown_route_is_problem_404(client) -> None:  # type: ignore[no-untyped-def]
    response = await client.get("/no/such/route")
    _is_problem(response, 404)
    body = await response.get_json()
    assert body["status"] == 404 and body["type"] and body["title"] == "Not Found"
    assert body["request_id"] == response.headers["X-Request-ID"]


async def test_wrong_method_is_problem_405_with_allow(client) -> None:  # type: ignore[no-untyped-def]
    response = await client.delete("/healthz")
    _is_problem(response, 405)
    assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"name": "x"', b"\xff\xfe\x00garbage", b""],
    ids=["broken", "truncated", "not-utf8", "empty"],
)
async def test_malformed_json_is_problem_400(client, body: bytes) -> None:  # type: ignore[no-untyped-def]
    response = await client.post(
        "/_echo", data=body, headers={"Content-Type": "application/json"}
    )
    _is_problem(response, 400)
    assert (await response.get_json())["code"] == "malformed_request"


async def test_schema_violation_is_problem_422_with_errors(client) -> None:  # type: ignore[no-untyped-def]
    response = await client.post("/_echo", json={"name": ""})
    _is_problem(response, 422)
    body = await response.get_json()
    assert body["code"] == "validation_error"
    assert body["errors"][0]["loc"] == ["name"]


async def test_500_is_generic_and_logged_with_request_id(client, caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.ERROR):
        response = await client.get("/_boom", headers={"X-Request-ID": "trace-abc-123"})
    _is_problem(response, 500)
    text = await response.get_data(as_text=True)
    assert "Traceback" not in text and "secret internals" not in text
    assert response.headers["X-Request-ID"] == "trace-abc-123"
    records = [r for r in caplog.records if r.name == "taskapi.errors"]
    assert records and records[0].request_id == "trace-abc-123"  # type: ignore[attr-defined]


async def test_oversized_body_is_problem_413(make_settings, redis_sync) -> None:  # type: ignore[no-untyped-def]
    app = create_app(make_settings(max_body_bytes=1024))
    async with app.test_app() as test_app:
        response = await test_app.test_client().post(
            "/healthz", data=b"x" * 4096, headers={"Content-Type": "application/json"}
        )
    _is_problem(response, 413)


async def test_bogus_request_id_is_replaced(client) -> None:  # type: ignore[no-untyped-def]
    response = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert response.headers["X-Request-ID"] != "bad id\twith spaces"
    assert len(response.headers["X-Request-ID"]) == 32
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_a_bad_query_string_says_query_not_body(client, make_user) -> None:  # type: ignore[no-untyped-def]
    manager = await make_user("manager")
    response = await client.get("/tasks?limit=0", headers=manager.headers)
    _is_problem(response, 422)
    body = await response.get_json()
    assert body["detail"] == "The query string is invalid." and body["errors"][0]["loc"] == ["limit"]
    response = await client.post("/_echo", json={"name": ""})
    assert (await response.get_json())["detail"] == "The request body is invalid."


async def test_a_refused_connection_is_database_unavailable(database_url: str) -> None:
    """PostgreSQL out of connections ("sorry, too many clients already", SQLSTATE 53300)
    is busy, not a bug: a 503 to retry, not a 500 (a compare.py run on PostgreSQL with four
    apps sharing max_connections answered 500s). A role with CONNECTION LIMIT 0 gets the
    same SQLSTATE for real."""
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's connection limit")
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.ext.asyncio import create_async_engine

    from taskapi.http.problems import database_unavailable

    admin = create_async_engine(database_url)
    async with admin.connect() as conn:
        await conn.execute(text("DROP ROLE IF EXISTS taskapi_no_connections"))
        await conn.execute(text("CREATE ROLE taskapi_no_connections LOGIN CONNECTION LIMIT 0"))
        await conn.commit()
    limited = create_async_engine(database_url.replace("://postgres@", "://taskapi_no_connections@"))
    try:
        with pytest.raises(DBAPIError) as refused:
            async with limited.connect():
                pass
        assert getattr(refused.value.orig, "sqlstate", None) == "53300"
        assert database_unavailable(refused.value)
    finally:
        await limited.dispose()
        async with admin.connect() as conn:
            await conn.execute(text("DROP ROLE IF EXISTS taskapi_no_connections"))
            await conn.commit()
        await admin.dispose()
