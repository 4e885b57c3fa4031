"""Slow request bodies against a real `taskapi serve --workers 1` (hardening issue #14,
finding 4): a client that announces a body and sends it slowly, or not at all, must not hold
one of the process's MAX_CONCURRENCY admission slots while it dawdles. Its body is read under
BODY_TIMEOUT before it is admitted, and past that it gets a 408 problem and the connection
closes; fast bodies work as before and an oversized one is still a 413."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.processes import cli_env, serve

PROBLEM = "application/problem+json"
MAX_CONCURRENCY = 4
BODY_TIMEOUT = 4.0
MAX_BODY = 4096
KEEP_ALIVE = 3  # hypercorn's keep_alive_timeout, which also bounds the wait for a head
SLOW_HEAD = (b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             b"Content-Length: 1000\r\n\r\n")

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path, redis_url: str
           ) -> Iterator[tuple[str, Path]]:
    """One server for the module (SQLite: the database plays no part here): the base URL
    and the server's log."""
    root = tmp_path_factory.mktemp("slow_bodies")
    shutil.copyfile(sqlite_template, root / "taskapi.db")
    env = cli_env(root / "data", TASKAPI_DATABASE_URL=f"sqlite+aiosqlite:///{root}/taskapi.db",
                  TASKAPI_REDIS_URL=redis_url,
                  TASKAPI_MAX_CONCURRENCY=str(MAX_CONCURRENCY),
                  TASKAPI_BODY_TIMEOUT=str(BODY_TIMEOUT),
                  TASKAPI_MAX_BODY_BYTES=str(MAX_BODY))
    config = root / "hypercorn.toml"
    config.write_text(f"keep_alive_timeout = {KEEP_ALIVE}\n")
    with serve(env, "--workers", "1", "--no-worker", "--config", str(config)) as base:
        yield base, root / f"serve-{urlsplit(base).port}.log"


async def _open(base: str, head: bytes, first: bytes = b"") -> Streams:
    url = urlsplit(base)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(head + first)
    await writer.drain()
    return reader, writer


async def _slow_body(base: str) -> Streams:
    """A POST that announces 1000 bytes of body and sends one."""
    return await _open(base, SLOW_HEAD, b"{")


async def _response(reader: asyncio.StreamReader, within: float
                    ) -> tuple[int, dict[str, str], bytes] | str:
    """(status, headers, body) of one response read off a raw socket, or "timeout"."""
    try:
        async with asyncio.timeout(within):
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
            headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
    except TimeoutError:
        return "timeout"
    return int(status_line.split()[1]), headers, body


async def _status(request: object) -> int | str:
    try:
        response = await request  # type: ignore[misc]
    except httpx.TimeoutException:
        return "timeout"
    return int(response.status_code)


def _assert_problem(headers: dict[str, str], body: bytes, status: int, code: str) -> None:
    assert headers["content-type"] == PROBLEM
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["connection"] == "close"
    assert "x-request-id" in headers
    document = json.loads(body)
    assert {k: document[k] for k in ("status", "code")} == {"status": status, "code": code}
    assert document["type"].startswith("http://") and document["type"].endswith(
        f"/problems/{code}")
    assert document["title"] and document["detail"]


async def test_slow_bodies_do_not_hold_the_admission_slots(server) -> None:  # type: ignore[no-untyped-def]
    base, log = server
    opened = time.monotonic()
    slow = [await _slow_body(base) for _ in range(2 * MAX_CONCURRENCY)]
    await asyncio.sleep(0.5)  # every one of them has reached the server
    async with httpx.AsyncClient(base_url=base, timeout=BODY_TIMEOUT - 1.5) as client:
        health = await _status(client.get("/healthz"))
        login = await _status(client.post("/login", json={"email": "nobody@example.com",
                                                          "password": "not the password"}))
    answered = time.monotonic() - opened
    assert (health, login) == (200, 401)
    assert answered < BODY_TIMEOUT  # while every slow body was still pending

    # Each slow body, in its turn, gets a 408 problem once BODY_TIMEOUT has passed.
    for reader, writer in slow:
        response = await _response(reader, BODY_TIMEOUT + 10)
        assert response != "timeout"
        status, headers, body = response  # type: ignore[misc]
        assert status == 408
        _assert_problem(headers, body, 408, "request_timeout")
        assert await reader.read() == b""  # and the server closed the connection
        writer.close()
    assert time.monotonic() - opened >= BODY_TIMEOUT - 0.5
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("pace", ["stalled", "trickled"])
async def test_a_slow_body_gets_a_408_problem_after_the_body_timeout(server, pace) -> None:  # type: ignore[no-untyped-def]
    """A stalled body and one trickled a byte at a time alike: the timeout is a deadline for
    the whole body, not for each read."""
    base, _log = server
    started = time.monotonic()
    reader, writer = await _slow_body(base)

    async def trickle() -> None:
        for _ in range(999):
            await asyncio.sleep(0.25)
            writer.write(b" ")
            await writer.drain()

    sender = asyncio.create_task(trickle()) if pace == "trickled" else None
    try:
        response = await _response(reader, BODY_TIMEOUT + 5)
    finally:
        if sender is not None:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
    elapsed = time.monotonic() - started
    assert response != "timeout"
    status, headers, body = response  # type: ignore[misc]
    assert status == 408
    _assert_problem(headers, body, 408, "request_timeout")
    assert BODY_TIMEOUT - 0.5 <= elapsed < BODY_TIMEOUT + 3
    writer.close()


async def test_fast_bodies_work_as_before(server) -> None:  # type: ignore[no-untyped-def]
    """Content-Length and chunked bodies, one after another on a kept-alive connection, and a
    body that arrives in parts within the timeout."""
    base, _log = server
    user = {"username": "quick", "email": "quick@example.com", "password": "correct horse"}

    async def chunked() -> object:
        data = json.dumps({**user, "username": "chunked", "email": "chunked@example.com"})
        for part in (data[:10], data[10:]):
            yield part.encode()

    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        first = await client.post("/register", json=user)
        second = await client.post("/register", content=chunked(),  # type: ignore[arg-type]
                                   headers={"Content-Type": "application/json"})
        again = await client.post("/register", json=user)
    assert (first.status_code, second.status_code, again.status_code) == (202, 202, 409)  # 409: the username is taken
    assert second.json()["username"] == "chunked"

    body = json.dumps({"email": "nobody@example.com", "password": "x"}).encode()
    reader, writer = await _open(
        base, b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body))
    for part in (body[:5], body[5:20], body[20:]):
        await asyncio.sleep(0.3)
        writer.write(part)
        await writer.drain()
    response = await _response(reader, 10)
    writer.close()
    assert response != "timeout" and response[0] == 401  # type: ignore[index]


async def test_a_body_over_the_limit_is_still_a_413_at_once(server) -> None:  # type: ignore[no-untyped-def]
    """Announced too large (nothing sent) or chunked past the limit and then stalled: the
    answer does not wait for the rest, let alone for the body timeout."""
    base, _log = server
    announced = (b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % (MAX_BODY + 1))
    chunk = b"x" * (MAX_BODY + 100)
    chunked = (b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(chunk), chunk))
    for label, head in (("announced", announced), ("chunked", chunked)):
        started = time.monotonic()
        reader, writer = await _open(base, head)
        response = await _response(reader, BODY_TIMEOUT - 1)
        writer.close()
        assert response != "timeout", label
        status, headers, body = response  # type: ignore[misc]
        assert status == 413, label
        _assert_problem(headers, body, 413, "payload_too_large")
        assert time.monotonic() - started < BODY_TIMEOUT - 1, label


async def test_a_slow_head_is_closed_at_the_keep_alive_timeout_and_holds_no_slot(server) -> None:  # type: ignore[no-untyped-def]
    """The head before the body: hypercorn's idle timer runs until a head is complete, and
    bytes trickling in do not restart it; a request that never completed its head never
    reached admission. (Why serve sets no read_timeout: ops/server.py, decision 020.)"""
    base, _log = server
    opened = time.monotonic()
    heads = [await _open(base, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
             for _ in range(2 * MAX_CONCURRENCY)]

    async def trickle(writer: asyncio.StreamWriter) -> None:
        for _ in range(999):
            await asyncio.sleep(0.5)
            writer.write(b"X-Slow: 1\r\n")
            await writer.drain()

    senders = [asyncio.create_task(trickle(writer)) for _reader, writer in heads]
    try:
        async with httpx.AsyncClient(base_url=base, timeout=KEEP_ALIVE - 1) as client:
            assert await _status(client.get("/healthz")) == 200
        closed = []
        for reader, _writer in heads:
            async with asyncio.timeout(KEEP_ALIVE + 5):
                closed.append(await reader.read())
    finally:
        for sender in senders:
            sender.cancel()
        await asyncio.gather(*senders, return_exceptions=True)
        for _reader, writer in heads:
            writer.close()
    assert closed == [b""] * len(heads)  # closed without an answer
    assert KEEP_ALIVE - 0.5 <= time.monotonic() - opened < KEEP_ALIVE + 5
