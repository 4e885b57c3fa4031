"""ops/lean_connections.py: hypercorn's per-connection queue and events on lists behave as
asyncio's own (FIFO, a bounded put that waits, a cancelled get that loses nothing, join), and
a hypercorn server with `install()` really uses them; core/heap_trim.py trims once a burst of
stream opens or closes has settled."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
from typing import Any

import httpx
import pytest
from hypercorn.asyncio import serve
from hypercorn.asyncio.task_group import TaskGroup
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import EventWrapper
from hypercorn.config import Config

from taskapi.core.heap_trim import TRIM_AFTER, HeapTrim, _malloc_trim
from taskapi.ops import lean_connections
from taskapi.ops.lean_connections import Waiters, lean_drain_waiters, lean_event, lean_queue
from tests.support.ports import free_port


def _lean_queue(maxsize: int = 0) -> asyncio.Queue[Any]:
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
    lean_queue(queue)
    return queue


def _deques(*owners: Any) -> list[Any]:
    return [value for owner in owners for value in vars(owner).values()
            if isinstance(value, collections.deque)]


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """install() for one test: the originals are put back after it."""
    for owner, name in ((EventWrapper, "__init__"), (TaskGroup, "spawn_app"),
                        (TCPServer, "__init__")):
        monkeypatch.setattr(owner, name, getattr(owner, name))
    lean_connections.install()
    lean_connections.install()  # idempotent: wrapped once
    assert not getattr(EventWrapper.__init__.__wrapped__, "__wrapped_by_lean__", False)


@pytest.mark.parametrize("make", [asyncio.Queue, _lean_queue], ids=["asyncio", "lean"])
async def test_the_queue_behaves_as_asyncio_queue(make: Any) -> None:
    queue = make(2)
    await queue.put(1)
    await queue.put(2)
    blocked = asyncio.create_task(queue.put(3))  # full: waits for a get
    await asyncio.sleep(0)
    assert not blocked.done() and queue.full()
    assert [await queue.get(), await queue.get()] == [1, 2]
    await blocked
    assert queue.get_nowait() == 3 and queue.empty()

    first, second = asyncio.create_task(queue.get()), asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("a")
    first.cancel()  # woken, then cancelled before it ran: the item goes to the next getter
    assert await second == "a"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert queue.empty()

    queue = make()
    queue.put_nowait("b")
    joined = asyncio.create_task(queue.join())
    await asyncio.sleep(0)
    assert not joined.done()
    queue.get_nowait()
    queue.task_done()
    await asyncio.wait_for(joined, 1)


async def test_a_lean_queue_and_event_keep_no_deque() -> None:
    queue, event = _lean_queue(10), asyncio.Event()
    lean_event(event)
    assert _deques(queue, queue._finished, event) == []
    busy: asyncio.Queue[Any] = asyncio.Queue()
    busy.put_nowait(1)
    lean_queue(busy)  # not empty: its items stay in their deque
    assert isinstance(busy._queue, collections.deque)  # type: ignore[attr-defined]


async def test_a_lean_event_wakes_every_waiter_and_clears() -> None:
    event = asyncio.Event()
    lean_event(event)
    waiters = [asyncio.create_task(event.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters) and not event.is_set()
    event.set()
    await asyncio.wait_for(asyncio.gather(*waiters), 1)
    event.clear()
    late = asyncio.create_task(event.wait())
    await asyncio.sleep(0.01)
    assert not late.done()
    late.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await late
    assert not event._waiters  # type: ignore[attr-defined]


async def test_lean_drain_waiters_drain_and_fail_as_asyncio_s() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        lean_drain_waiters(writer)
        protocol = writer._protocol  # type: ignore[attr-defined]
        assert isinstance(protocol._drain_waiters, Waiters)
        protocol.pause_writing()
        drained = asyncio.create_task(writer.drain())
        await asyncio.sleep(0)
        assert not drained.done() and len(protocol._drain_waiters) == 1
        protocol.resume_writing()
        await asyncio.wait_for(drained, 1)
        assert not protocol._drain_waiters
        protocol.pause_writing()
        lost = asyncio.create_task(writer.drain())
        await asyncio.sleep(0)
        protocol.connection_lost(ConnectionResetError("gone"))
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(lost, 1)
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_hypercorn_with_install_serves_on_lean_waiters(installed: None) -> None:
    seen: dict[str, Any] = {}
    config, port, stop = Config(), free_port(), asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        queue = receive.__self__  # hypercorn's receive is its queue's get
        servers = [o for o in gc.get_objects()
                   if isinstance(o, TCPServer) and o.config is config]
        seen["deques"] = _deques(queue, queue._finished, *servers,
                                 *(s.writer._protocol for s in servers),
                                 *(s.protocol.protocol.can_read._event for s in servers))
        seen["servers"] = len(servers)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x" * 200_000})

    config.bind = [f"127.0.0.1:{port}"]
    server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    response = None
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                try:
                    response = await client.get(f"http://127.0.0.1:{port}/")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.05)
        assert response is not None, "hypercorn did not answer"
        assert response.status_code == 200 and len(response.content) == 200_000
    finally:
        stop.set()
        await asyncio.wait_for(server, 10)
    assert seen["servers"] == 1 and seen["deques"] == []


def test_uninstall_puts_hypercorn_s_own_constructors_back(installed: None) -> None:
    wrapped = (EventWrapper.__init__, TaskGroup.spawn_app, TCPServer.__init__)
    lean_connections.uninstall()
    assert (EventWrapper.__init__, TaskGroup.spawn_app, TCPServer.__init__) == tuple(
        w.__wrapped__ for w in wrapped)
    lean_connections.uninstall()  # nothing to undo
    lean_connections.install()
    assert all(getattr(f, "__wrapped_by_lean__", False)
               for f in (EventWrapper.__init__, TaskGroup.spawn_app, TCPServer.__init__))


async def test_the_heap_is_trimmed_once_a_burst_settles() -> None:
    calls: list[int] = []
    heap = HeapTrim(trim=lambda pad: calls.append(pad) or 1)
    for count in (100, TRIM_AFTER - 1, TRIM_AFTER - 1):  # not moved enough
        await heap.tick(count)
    assert calls == []
    await heap.tick(TRIM_AFTER + 500)  # still opening
    assert calls == []
    await heap.tick(TRIM_AFTER + 500)  # settled
    assert calls == [0] and heap.trims == 1
    await heap.tick(TRIM_AFTER + 500)  # nothing moved since
    await heap.tick(TRIM_AFTER + 400)
    await heap.tick(TRIM_AFTER + 400)
    assert heap.trims == 1
    await heap.tick(0)  # a burst of closes
    await heap.tick(0)
    assert heap.trims == 2


async def test_a_failed_trim_is_a_warning_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    def broken(pad: int) -> int:
        raise OSError("no")

    heap = HeapTrim(trim=broken)
    await heap.tick(TRIM_AFTER)
    await heap.tick(TRIM_AFTER)  # settled: tries, fails, says so, returns
    assert heap.trims == 0 and "malloc_trim failed" in caplog.text


async def test_malloc_trim_is_glibc_s_own() -> None:
    trim = _malloc_trim()
    if trim is None:
        pytest.skip("not glibc: no malloc_trim")
    assert trim(0) in (0, 1)
    assert await asyncio.to_thread(trim, 0) in (0, 1)
