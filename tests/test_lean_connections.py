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
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.config import Config

from taskapi.core.heap_trim import TRIM_AFTER, HeapTrim, _malloc_trim
from taskapi.ops import lean_connections
from taskapi.ops.lean_connections import LeanEvent, LeanQueue
from tests.support.ports import free_port


@pytest.mark.parametrize("make", [asyncio.Queue, LeanQueue], ids=["asyncio", "lean"])
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


async def test_the_lean_queue_and_event_keep_no_deque() -> None:
    queue, event = LeanQueue(10), LeanEvent()
    deques = [value for value in (*vars(queue).values(), *vars(queue._finished).values(),
                                  *vars(event._event).values())
              if isinstance(value, collections.deque)]
    assert deques == []


async def test_the_lean_event_wakes_every_waiter_and_clears() -> None:
    event = LeanEvent()
    waiters = [asyncio.create_task(event.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters) and not event.is_set()
    await event.set()
    await asyncio.wait_for(asyncio.gather(*waiters), 1)
    await event.clear()
    assert not event.is_set()
    late = asyncio.create_task(event.wait())
    await asyncio.sleep(0.01)
    assert not late.done()
    late.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await late
    assert not event._event._waiters  # the cancelled waiter is gone


async def test_hypercorn_with_install_serves_on_the_lean_classes() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        seen["receive"] = getattr(receive, "__self__", None)
        servers = [o for o in gc.get_objects() if isinstance(o, TCPServer)]
        seen["drain"] = {type(s.writer._protocol._drain_waiters) for s in servers}
        seen["can_read"] = {type(s.protocol.protocol.can_read) for s in servers}
        body = b"x" * 200_000  # more than a socket buffer: the writer drains
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    lean_connections.install()
    config, port, stop = Config(), free_port(), asyncio.Event()
    config.bind = [f"127.0.0.1:{port}"]
    server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(50):
                try:
                    response = await client.get(f"http://127.0.0.1:{port}/")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.05)
        assert response.status_code == 200 and len(response.content) == 200_000
    finally:
        stop.set()
        await asyncio.wait_for(server, 10)
    assert isinstance(seen["receive"], LeanQueue)
    assert seen["can_read"] == {LeanEvent}
    assert seen["drain"] and all(kind is not collections.deque for kind in seen["drain"])


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


async def test_malloc_trim_is_glibc_s_own() -> None:
    trim = _malloc_trim()
    if trim is None:
        pytest.skip("not glibc: no malloc_trim")
    assert trim(0) in (0, 1)
    assert await asyncio.to_thread(trim, 0) in (0, 1)
