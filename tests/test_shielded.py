"""core/shielded.py: shielded work finishes when its caller is cancelled, and a failure after
that is logged in one line, never left as "Task exception was never retrieved"."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import pytest

from taskapi.core.shielded import run_to_end


async def _cancel_caller_then_settle(work: Any) -> list[dict[str, Any]]:
    """Run `work` under a caller that is cancelled at once; the loop's unhandled errors."""
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    caller = asyncio.ensure_future(work)
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    del caller
    await asyncio.sleep(0.2)  # the shielded work ends
    gc.collect()  # a task nobody retrieved reports itself when collected
    await asyncio.sleep(0)
    loop.set_exception_handler(None)
    return unhandled


async def test_the_work_finishes_after_its_caller_is_cancelled(caplog) -> None:  # type: ignore[no-untyped-def]
    done: list[str] = []

    async def write() -> str:
        await asyncio.sleep(0.05)
        done.append("committed")
        return "ok"

    assert await _cancel_caller_then_settle(run_to_end(write(), "the write")) == []
    assert done == ["committed"]


async def test_a_failure_after_the_caller_left_is_one_warning(caplog) -> None:  # type: ignore[no-untyped-def]
    async def write() -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("database away")

    with caplog.at_level(logging.WARNING, logger="taskapi.shielded"):
        unhandled = await _cancel_caller_then_settle(run_to_end(write(), "the write"))
    assert unhandled == []
    assert [r.getMessage() for r in caplog.records] == [
        "the write failed after its caller had gone: RuntimeError('database away')"]


async def test_plain_shield_leaves_the_failure_unretrieved() -> None:
    """Why the helper exists (if asyncio ever changes this, the helper can go)."""
    async def write() -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("database away")

    unhandled = await _cancel_caller_then_settle(asyncio.shield(write()))
    assert [c["message"] for c in unhandled] == ["Task exception was never retrieved"]


async def test_a_caller_that_stays_gets_the_result_or_the_error() -> None:
    async def ok() -> int:
        return 7

    async def bad() -> None:
        raise ValueError("no")

    assert await run_to_end(ok(), "ok") == 7
    with pytest.raises(ValueError, match="no"):
        await run_to_end(bad(), "bad")
