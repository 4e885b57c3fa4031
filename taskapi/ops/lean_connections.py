"""hypercorn's per-connection waiting structures, in lists rather than deques (issue 15).

A held event stream is a connection that waits for hours, so what each connection keeps is
the server's memory per stream. hypercorn gives every connection an `asyncio.Event` (the
h11 protocol's `can_read`) and every request an `asyncio.Queue` (its ASGI receive queue:
three deques and another Event), and asyncio gives each connection's stream writer a deque
of drain waiters. An empty `collections.deque` costs 760 bytes (it allocates its first
64-slot block at once), an empty list 56; these hold a few items at most (the receive queue
up to hypercorn's `max_app_queue_size`, 10). Six deques per stream were 4.4 KiB of the
~22 KiB a held stream cost (decision 050).

`install()` (when `ops/asgi.py` is loaded: by each `taskapi serve` worker and by
`hypercorn taskapi.ops.asgi:app`, before hypercorn makes its first connection) wraps three
of hypercorn's constructors; each runs hypercorn's own code first, then swaps the empty
deques of what it made for lists:
- `EventWrapper.__init__` (hypercorn's asyncio Event type): the Event's waiters;
- `TaskGroup.spawn_app`: the receive queue's getters, putters, items and `join` Event (the
  app's task has not run yet, so they are empty);
- `TCPServer.__init__`: the connection's drain waiters.
Anything that is not the empty deque asyncio 3.11-3.14 makes is left as it is. asyncio's code
then runs on lists where deques were (append, remove, popleft, iteration), so FIFO order, a
bounded put that waits, cancellation and drain behave as asyncio's own (tested against it in
tests/test_lean_connections.py).
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from hypercorn.asyncio.task_group import TaskGroup
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import EventWrapper


class Waiters(list[Any]):
    """A list with deque's popleft, for queues of a few: popleft is O(n), n stays tiny."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


def _lean(owner: Any, name: str) -> None:
    """owner.name becomes a Waiters if it is an empty deque."""
    value = getattr(owner, name, None)
    if type(value) is collections.deque and not value:
        setattr(owner, name, Waiters())


def lean_event(event: asyncio.Event) -> None:
    _lean(event, "_waiters")


def lean_queue(queue: asyncio.Queue[Any]) -> None:
    for name in ("_getters", "_putters", "_queue"):
        _lean(queue, name)
    finished = getattr(queue, "_finished", None)
    if isinstance(finished, asyncio.Event):
        lean_event(finished)


def lean_drain_waiters(writer: asyncio.StreamWriter) -> None:
    """The writer's protocol waits for drain on a list."""
    _lean(getattr(writer, "_protocol", None), "_drain_waiters")


def _after(original: Callable[..., Any], lean: Callable[..., None]) -> Callable[..., Any]:
    @functools.wraps(original)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        lean(self)

    init.__wrapped_by_lean__ = True  # type: ignore[attr-defined]
    return init


def _spawn_app(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(original)
    async def spawn_app(self: Any, *args: Any, **kwargs: Any) -> Any:
        put = await original(self, *args, **kwargs)
        queue = getattr(put, "__self__", None)  # hypercorn returns app_queue.put
        if isinstance(queue, asyncio.Queue):
            lean_queue(queue)
        return put

    spawn_app.__wrapped_by_lean__ = True  # type: ignore[attr-defined]
    return spawn_app


def _event_wrapper(wrapper: Any) -> None:
    event = getattr(wrapper, "_event", None)
    if isinstance(event, asyncio.Event):
        lean_event(event)


def _tcp_server(server: Any) -> None:
    writer = getattr(server, "writer", None)
    if writer is not None:
        lean_drain_waiters(writer)


def _targets() -> list[tuple[type, str, Callable[[Any], Any]]]:
    return [(EventWrapper, "__init__", lambda init: _after(init, _event_wrapper)),
            (TaskGroup, "spawn_app", _spawn_app),
            (TCPServer, "__init__", lambda init: _after(init, _tcp_server))]


def install() -> None:
    """Wrap hypercorn's constructors (once), in a process about to run hypercorn."""
    for owner, name, wrap in _targets():
        current = getattr(owner, name)
        if not getattr(current, "__wrapped_by_lean__", False):
            setattr(owner, name, wrap(current))


def uninstall() -> None:
    """hypercorn's constructors as they were (bench/stream_memory.py --no-lean, an A/B)."""
    for owner, name, _ in _targets():
        current = getattr(owner, name)
        if getattr(current, "__wrapped_by_lean__", False):
            setattr(owner, name, current.__wrapped__)
