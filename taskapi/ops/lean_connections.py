"""hypercorn's per-connection waiting structures, in lists rather than deques (issue 15).

A held event stream is a connection that waits for hours, so what each connection keeps is
the server's memory per stream. hypercorn gives every connection an `asyncio.Event` (the
h11 protocol's `can_read`) and every request an `asyncio.Queue` (its ASGI receive queue:
three deques and another Event), and asyncio gives each connection's stream writer a deque
of drain waiters. An empty `collections.deque` costs 760 bytes (it allocates its first
64-slot block at once), an empty list 56; these hold zero to two items all their life. Six
deques per stream are 4.4 KiB of the ~22 KiB a held stream cost.

`install()` (called in each `taskapi serve` worker before hypercorn starts) swaps them:
- `WorkerContext.event_class`, hypercorn's own hook for its Event type, becomes `LeanEvent`;
- `TaskGroup.spawn_app` makes the receive queue a `LeanQueue`, otherwise exactly as
  hypercorn 0.17/0.18 does;
- `TCPServer.__init__` gives the connection's protocol list-backed drain waiters, when they
  are the empty deque asyncio 3.11-3.13 makes (anything else is left as it is).
All are asyncio's own classes and code paths with lists where deques were, so the behaviour
(FIFO, a bounded put that waits, cancellation, drain) is asyncio's, tested against it in
tests/test_lean_connections.py.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from hypercorn.asyncio import task_group as hypercorn_task_group
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import EventWrapper, WorkerContext


class _Waiters(list[Any]):
    """A list with deque's popleft, for queues of zero, one or two: popleft is O(n), and n
    stays tiny here (one ASGI app reading its receive queue)."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


class _Event(asyncio.Event):
    def __init__(self) -> None:
        super().__init__()
        self._waiters = _Waiters()  # type: ignore[assignment]


class LeanQueue(asyncio.Queue[Any]):
    """asyncio.Queue with its waiters, items and `join` Event in lists."""

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        self._getters = _Waiters()
        self._putters = _Waiters()
        self._finished = _Event()
        self._finished.set()

    def _init(self, maxsize: int) -> None:
        self._queue = _Waiters()


class LeanEvent(EventWrapper):
    """hypercorn's asyncio EventWrapper over a list-backed asyncio.Event."""

    def __init__(self) -> None:
        self._event = _Event()


async def _spawn_app(self: Any, app: Any, config: Any, scope: Any,
                     send: Callable[..., Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    """hypercorn.asyncio.task_group.TaskGroup.spawn_app with a LeanQueue."""
    app_queue = LeanQueue(config.max_app_queue_size)

    def _call_soon(func: Callable[..., Any], *args: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(func(*args), self._loop)
        return future.result()

    self.spawn(hypercorn_task_group._handle, app, config, scope, app_queue.get, send,
               partial(self._loop.run_in_executor, None), _call_soon)
    return app_queue.put


def lean_drain_waiters(writer: asyncio.StreamWriter) -> None:
    """The writer's protocol waits for drain on a list, if it had asyncio's empty deque."""
    protocol = getattr(writer, "_protocol", None)
    waiters = getattr(protocol, "_drain_waiters", None)
    if type(waiters) is collections.deque and not waiters:
        protocol._drain_waiters = _Waiters()  # type: ignore[union-attr]


_tcp_server_init = TCPServer.__init__


def _tcp_server(self: TCPServer, *args: Any) -> None:
    """hypercorn's TCPServer.__init__ (its last argument the connection's writer), then
    lean_drain_waiters."""
    _tcp_server_init(self, *args)
    lean_drain_waiters(self.writer)


def install() -> None:
    """Swap in the lean classes (idempotent), in a process about to run hypercorn."""
    WorkerContext.event_class = LeanEvent
    hypercorn_task_group.TaskGroup.spawn_app = _spawn_app  # type: ignore[method-assign]
    TCPServer.__init__ = _tcp_server  # type: ignore[method-assign,assignment]
