"""Live-event streams guarded, through real `taskapi serve` processes: revocation ends them,
tickets are single use and expire, SIGTERM ends them at once, a slow consumer is cut off,
and the per-process and per-user caps answer problems."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx

from taskapi.core.event_channel import CHANNEL
from taskapi.services import events
from tests.support.processes import serve, shared_env
from tests.support.streams import sse, ws


def _env(tmp_path: Path, database_url: str, redis_url: str, name: str = "data",
         **extra: str) -> dict[str, str]:
    return shared_env(tmp_path / name, database_url, redis_url, **extra)


async def _ended_within(stream: Any, seconds: float) -> float:
    """Seconds until the SSE stream ends (fails past `seconds`)."""
    started = time.monotonic()
    while await stream.next(seconds) is not None:
        pass
    return time.monotonic() - started


async def test_logout_demotion_and_deletion_end_open_streams(tmp_path: Path, database_url: str, redis_url: str, redis_sync, make_user) -> None:  # type: ignore[no-untyped-def]
    admin = await make_user("admin")
    employee = await make_user("employee")
    manager = await make_user("manager")
    doomed = await make_user("employee")
    with serve(_env(tmp_path, database_url, redis_url), "--workers", "2") as base:
        ws_base = base.replace("http", "ws")
        async with sse(f"{base}/events", employee.headers) as by_logout, \
                ws(f"{ws_base}/ws", manager.headers) as by_demotion, \
                sse(f"{base}/events", doomed.headers) as by_deletion, \
                sse(f"{base}/events", admin.headers) as unaffected:
            assert by_demotion.status == 101
            await asyncio.sleep(0.3)
            assert httpx.post(f"{base}/logout", headers=employee.headers).status_code == 204
            assert await _ended_within(by_logout, 2.5) < 2.5
            assert httpx.put(f"{base}/users/{manager.id}", headers=admin.headers,
                             json={"role": "employee"}).status_code == 200
            assert await by_demotion.next(2.5) is None
            assert by_demotion.close_code == 4401
            assert httpx.delete(f"{base}/users/{doomed.id}",
                                headers=admin.headers).status_code == 204
            assert await _ended_within(by_deletion, 2.5) < 2.5
            # The admin's stream goes on and sees the next write.
            created = httpx.post(f"{base}/tasks", headers=admin.headers, json={"title": "x"})
            message = await unaffected.next()
            assert message is not None and message.json()["id"] == created.json()["id"]
        # A revoked session cannot open a new stream.
        refused = httpx.get(f"{base}/events", headers=employee.headers)
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"


async def test_tickets_are_single_use_bound_to_the_session_and_expire(tmp_path: Path, database_url: str, redis_url: str, redis_sync, make_user) -> None:  # type: ignore[no-untyped-def]
    manager = await make_user("manager")
    with serve(_env(tmp_path, database_url, redis_url), "--workers", "2") as base:
        ws_base = base.replace("http", "ws")

        def ticket() -> str:
            answer = httpx.post(f"{base}/events/ticket", headers=manager.headers)
            assert answer.status_code == 200
            assert answer.headers["cache-control"] == "no-store"
            body = answer.json()
            assert body["expires_in"] == 60 and set(body) == {"ticket", "expires_in"}
            return str(body["ticket"])

        first = ticket()
        async with sse(f"{base}/events?ticket={first}") as stream:  # no Authorization header
            assert stream.response.status_code == 200
            created = httpx.post(f"{base}/tasks", headers=manager.headers, json={"title": "t"})
            message = await stream.next()
            assert message is not None and message.json()["id"] == created.json()["id"]
        used = httpx.get(f"{base}/events?ticket={first}")
        assert used.status_code == 401 and used.json()["code"] == "invalid_ticket"
        async with ws(f"{ws_base}/ws?ticket={first}") as refused:
            assert refused.status == 401
        second = ticket()
        async with ws(f"{ws_base}/ws?ticket={second}") as socket_:
            assert socket_.status == 101
        async with ws(f"{ws_base}/ws?ticket={second}") as refused:
            assert refused.status == 401
        # Expired: its Redis key's time is up.
        third = ticket()
        key = "evt:ticket:" + hashlib.sha256(third.encode()).hexdigest()
        assert 55 <= redis_sync.ttl(key) <= 60
        redis_sync.pexpire(key, 1)
        time.sleep(0.05)
        assert httpx.get(f"{base}/events?ticket={third}").status_code == 401
        # Bound to the session: after logout an unused ticket opens nothing.
        fourth = ticket()
        assert httpx.post(f"{base}/logout", headers=manager.headers).status_code == 204
        assert httpx.get(f"{base}/events?ticket={fourth}").status_code == 401
        # Never a JWT in the query string.
        assert httpx.get(f"{base}/events?access_token={manager.access}").status_code == 422
        assert httpx.get(f"{base}/events?ticket={manager.access}").status_code in (401, 422)


async def test_sigterm_ends_streams_at_once_with_a_retry_hint(tmp_path: Path, database_url: str, redis_url: str, redis_sync, make_user) -> None:  # type: ignore[no-untyped-def]
    manager = await make_user("manager")
    with serve(_env(tmp_path, database_url, redis_url), "--workers", "2",
               stop=False) as (base, process):
        async with sse(f"{base}/events", manager.headers) as one, \
                sse(f"{base}/events", {**manager.headers, "Connection": "close"}) as two:
            await asyncio.sleep(0.3)
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            for stream in (one, two):
                assert await _ended_within(stream, 3) < 3
                assert len(stream.retries) == 2 and stream.retries[1] <= 3000
        while process.poll() is None:
            assert time.monotonic() - started < 15, "serve waited on its streams"
            await asyncio.sleep(0.1)
        assert process.returncode == 0


def _stalled_stream(port: int, token: str) -> socket.socket:
    """An SSE stream on a socket with a small receive buffer that the test does not read."""
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", port))
    stalled.sendall(f"GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                    f"{token}\r\n\r\n".encode())
    return stalled


async def _flood(base: str, db: Any, redis_sync: Any, manager: Any) -> None:
    """More than the socket buffers hold (up to 4 MiB here): 800 events of 10 kB at once."""
    task = httpx.post(f"{base}/tasks", headers=manager.headers,
                      json={"title": "big", "description": "x" * 10_000}).json()
    async with db.transaction() as session:
        for _ in range(800):
            await events.record(session, events.values(
                events.UPDATED, task["id"], manager.id, [], task))
    redis_sync.publish(CHANNEL, b"")


def _open_streams(base: str) -> float:
    scraped = httpx.get(f"{base}/metrics").text
    return next(float(line.split()[1]) for line in scraped.splitlines()
                if line.startswith("taskapi_event_streams "))


async def test_a_slow_consumer_is_cut_off_with_a_reset(tmp_path: Path, database_url: str, redis_url: str, redis_sync, make_user, db) -> None:  # type: ignore[no-untyped-def]
    manager = await make_user("manager")
    env = _env(tmp_path, database_url, redis_url, TASKAPI_EVENTS_QUEUE="4")
    with serve(env) as base:
        slow = _stalled_stream(int(base.rsplit(":", 1)[1]), manager.access)
        await asyncio.sleep(0.5)  # the stream is open; this client now reads nothing
        await _flood(base, db, redis_sync, manager)
        await asyncio.sleep(1.5)  # the queue has overflowed
        # Reading again: what the socket buffers held, then the reset, then the end.
        slow.settimeout(10)
        received = b""
        while not received.endswith(b"\r\n0\r\n\r\n"):  # the stream's last chunk
            chunk = slow.recv(65536)
            assert chunk, received[-300:]
            received += chunk
        slow.close()
        assert received.startswith(b"HTTP/1.1 200")
        assert b"event: reset" in received and b'"reason": "slow"' in received
        assert received.count(b"event: task.updated") < 800  # cut off, not all delivered
        # The server took nothing amiss: new streams open.
        async with sse(f"{base}/events", manager.headers) as stream:
            assert stream.response.status_code == 200


async def test_a_client_that_reads_nothing_is_dropped(tmp_path: Path, database_url: str, redis_url: str, redis_sync, make_user, db) -> None:  # type: ignore[no-untyped-def]
    """Its last frames cannot be written either: after CUT_GRACE (5 s) the server drops the
    connection and forgets the stream, whatever the client does."""
    manager = await make_user("manager")
    env = _env(tmp_path, database_url, redis_url, TASKAPI_EVENTS_QUEUE="4")
    with serve(env) as base:
        stalled = _stalled_stream(int(base.rsplit(":", 1)[1]), manager.access)
        await asyncio.sleep(0.5)
        assert _open_streams(base) == 1
        await _flood(base, db, redis_sync, manager)
        deadline = time.monotonic() + 10
        while _open_streams(base) != 0:
            assert time.monotonic() < deadline, "the stalled stream was never dropped"
            await asyncio.sleep(0.25)
        stalled.settimeout(10)
        received = b""
        while chunk := stalled.recv(65536):  # what the buffers held, then the drop
            received += chunk
        stalled.close()
        assert not received.endswith(b"\r\n0\r\n\r\n")  # cut, not ended


async def test_stream_caps_answer_problems_with_retry_after(tmp_path: Path, database_url: str, redis_url: str, redis_sync, make_user) -> None:  # type: ignore[no-untyped-def]
    one, two, three = [await make_user("employee") for _ in range(3)]
    env = _env(tmp_path, database_url, redis_url, TASKAPI_MAX_STREAMS="3",
               TASKAPI_MAX_STREAMS_PER_USER="2", TASKAPI_MAX_CONCURRENCY="1")
    with serve(env) as base:
        async with sse(f"{base}/events", one.headers), sse(f"{base}/events", one.headers):
            per_user = httpx.get(f"{base}/events", headers=one.headers)
            assert per_user.status_code == 429 and "retry-after" in per_user.headers
            # Streams hold no request slot (MAX_CONCURRENCY is 1): plain requests go on.
            assert httpx.get(f"{base}/me", headers=two.headers).status_code == 200
            async with sse(f"{base}/events", two.headers):
                full = httpx.get(f"{base}/events", headers=three.headers)
                assert full.status_code == 503 and full.headers["retry-after"] == "5"
                assert full.headers["content-type"] == "application/problem+json"
