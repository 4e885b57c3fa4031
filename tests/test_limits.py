"""Hostile input against a real `taskapi serve`: oversized bodies (with and without
Content-Length), deep or huge JSON, invalid UTF-8, NUL characters, giant query strings and
headers. Each is a 4xx problem+json with no stack trace, never a 5xx; every response says
`nosniff` and names no server software; and nothing was written."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.support.processes import cli_env, serve

PROBLEM = "application/problem+json"
MAX_BODY = 64 * 1024
HEX = "0123456789abcdef" * 2


def _chunked(total: int) -> bytes:
    """A chunked body (no Content-Length): only the bytes read can reveal its size."""
    chunk = b"x" * 4096
    return b"%x\r\n%s\r\n" % (len(chunk), chunk) * (total // 4096) + b"0\r\n\r\n"


def _cases(manager: dict[str, str], employee: dict[str, str]) -> list[tuple[str, Any]]:
    json_headers = {**manager, "Content-Type": "application/json"}

    def post(path: str, body: bytes, expected: int, headers: dict[str, str] = json_headers,
             method: str = "POST") -> dict[str, Any]:
        return {"method": method, "url": path, "content": body, "headers": headers,
                "expected": expected}

    def get(url: str, expected: int, headers: dict[str, str] = manager) -> dict[str, Any]:
        return {"method": "GET", "url": url, "headers": headers, "expected": expected}

    return [
        ("body over the limit", post("/tasks", b'{"title": "' + b"x" * MAX_BODY + b'"}', 413)),
        # Not much over: the server stops reading at the limit and closes, and a client still
        # sending would see a reset before the answer (no lingering close in hypercorn).
        ("chunked body over the limit (raw)", {
            "raw": b"POST /tasks", "body": _chunked(MAX_BODY + 16 * 1024), "expected": 413,
            "headers": {**json_headers, "Transfer-Encoding": "chunked"}}),
        ("body over the limit on a route without one", post("/logout", b"x" * 2 * MAX_BODY, 413)),
        ("100k-deep JSON arrays", post("/tasks", b"[" * (MAX_BODY - 10), 400)),
        ("deep JSON objects", post("/tasks", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, 400)),
        ("deep JSON, optional body", post("/reports", b"[" * 50_000, 400)),
        ("a 5000-digit number", post("/tasks", b'{"title": "t", "assigned_user_id": '
                                     + b"9" * 5000 + b"}", 400)),
        ("an id beyond the database's range", post(
            "/tasks", b'{"title": "t", "assigned_user_id": 99999999999999999999}', 422)),
        ("1e999 as a number", post("/reports", b'{"period_days": 1e999}', 422)),
        ("a 60 KB title", post("/tasks", b'{"title": "' + b"x" * 60_000 + b'"}', 422)),
        ("invalid UTF-8", post("/tasks", b'{"title": "\xff\xfe\xc3("}', 400)),
        ("NUL in a title", post("/tasks", b'{"title": "a\\u0000b"}', 422)),
        ("NUL in a description", post("/tasks", b'{"title": "t", "description": "\\u0000"}',
                                      422)),
        ("NUL in an update", post("/task/1", b'{"title": "a\\u0000"}', 422, method="PUT")),
        ("NUL in a username", post("/register", b'{"username": "ab\\u0000c", "email": '
                                   b'"n@example.test", "password": "long enough pw"}', 422)),
        ("NUL in a login email", post("/login", b'{"email": "a\\u0000@example.test", '
                                      b'"password": "whatever1"}', 422)),
        ("NUL in a refresh token", post("/token/refresh", b'{"refresh_token": "\\u0000"}', 422)),
        ("NUL in a timezone", post("/me", b'{"timezone": "UTC\\u0000"}', 422, method="PUT")),
        ("NUL in the search query", get("/tasks?q=a%00b", 422)),
        ("NUL in my search query", get("/tasks/mine?q=%00", 422, employee)),
        ("NUL in a cursor", get("/users?cursor=%00", 422)),
        ("NUL in a filter name", get("/tasks?st%00atus=pending", 422)),
        ("NUL in a path id", get("/task/1%00", 404)),
        ("NUL in a report id", get(f"/reports/{HEX[:31]}%00", 404)),
        ("a report id that is not one", get("/reports/..%2F..%2Fetc", 404)),
        ("a huge path id", get("/task/99999999999999999999", 404)),
        ("a huge path id, PUT", post("/task/99999999999999999999", b'{"title": "x"}', 404,
                                     method="PUT")),
        ("a huge path id, DELETE", post("/users/99999999999999999999", b"", 404,
                                        method="DELETE")),
        ("id zero", get("/users/0", 404)),
        ("a 60 KB query string", get("/tasks?q=" + "a" * 60_000, 414)),
        ("a 100 KB query string (raw)", {"raw": b"GET /tasks?q=" + b"a" * 100_000,
                                         "headers": manager, "expected": 414}),
        ("a 100 KB header", get("/tasks", 431, {**manager, "X-Big": "a" * 100_000})),
        ("a 100 KB header, anonymous", get("/healthz", 431, {"X-Big": "a" * 100_000})),
    ]


async def _raw(base: str, line: bytes, headers: dict[str, str], body: bytes = b"") -> httpx.Response:
    """One request written by hand (httpx refuses URLs over 64 KiB and always sends a
    Content-Length with a body it has whole)."""
    url = urlsplit(base)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    head = b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
    writer.write(line + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + head + b"\r\n"
                 + body)
    raw = await reader.read(-1)
    writer.close()
    status, rest = raw.split(b"\r\n", 1)
    lines, body = rest.split(b"\r\n\r\n", 1)
    parsed = [line.decode().split(": ", 1) for line in lines.split(b"\r\n")]
    return httpx.Response(int(status.split()[1]), headers=[(k, v) for k, v in parsed],
                          content=body)


async def test_hostile_input_is_a_4xx_problem_and_changes_nothing(  # type: ignore[no-untyped-def]
        tmp_path, database_url, redis_url, redis_sync, make_user) -> None:
    manager, employee, admin = [await make_user(r) for r in ("manager", "employee", "admin")]
    env = cli_env(tmp_path / "data", TASKAPI_DATABASE_URL=database_url,
                  TASKAPI_REDIS_URL=redis_url, TASKAPI_MAX_BODY_BYTES=str(MAX_BODY),
                  TASKAPI_RATE_LIMIT_DEFAULT="100000/minute")
    wrong = []
    with serve(env, "--no-worker") as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            task = await client.post("/tasks", headers=admin.headers, json={"title": "keep"})
            assert task.status_code == 201
            before = (await client.get("/tasks", headers=admin.headers)).json()
            for label, case in _cases(manager.headers, employee.headers):
                expected = case.pop("expected")
                try:
                    if "raw" in case:
                        response = await _raw(base, case["raw"], case["headers"],
                                              case.get("body", b""))
                    else:
                        response = await client.request(**case)
                except httpx.HTTPError as error:
                    wrong.append(f"{label}: {error!r}")
                    continue
                text = response.text
                if (response.status_code != expected
                        or response.headers.get("content-type") != PROBLEM
                        or response.headers.get("x-content-type-options") != "nosniff"
                        or "server" in response.headers or "Traceback" in text):
                    wrong.append(f"{label}: {response.status_code} (want {expected}) "
                                 f"{dict(response.headers)} {text[:200]}")
            after = (await client.get("/tasks", headers=admin.headers)).json()
    assert wrong == [], "\n".join(wrong)
    assert after == before  # nothing created, nothing changed
