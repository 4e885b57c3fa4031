"""Work that must finish even when the request (or job) awaiting it is cancelled.

`asyncio.shield(coro())` alone has two gaps: the task it makes is referenced only weakly by
the loop, and once the caller is cancelled shield drops its callback on that task, so a
failure afterwards is nobody's: "Task exception was never retrieved", a traceback at ERROR
(the likely source of those lines under compare.py on PostgreSQL, where status writes failed
for want of connections while wrk closed its connections). `run_to_end(coro, what)` holds the
task until it ends and, when its caller had gone, logs how it ended in one line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger("taskapi.shielded")
T = TypeVar("T")

_running: set[asyncio.Task[Any]] = set()  # strong references until each task ends


async def run_to_end(coro: Coroutine[Any, Any, T], what: str) -> T:
    """`await coro`, which a cancelled caller does not stop (the caller still gets its
    CancelledError at once)."""
    task = asyncio.ensure_future(coro)
    _running.add(task)
    task.add_done_callback(_running.discard)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(lambda done: _abandoned(done, what))
        raise


def _abandoned(task: asyncio.Task[Any], what: str) -> None:
    if task.cancelled():
        log.warning("%s was cancelled after its caller had gone", what)
        return
    error = task.exception()  # retrieved: its caller is gone
    if error is not None:
        log.warning("%s failed after its caller had gone: %r", what, error)
