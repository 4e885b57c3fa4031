"""The real ARQ worker, run in the test's own loop."""

from __future__ import annotations

from typing import Any

from taskapi.config import Settings


async def run_worker_burst(settings: Settings, redis_url: str) -> Any:
    """Run the real ARQ worker until the queue is empty."""
    from taskapi.ops.worker_loop import build_worker

    # No cron jobs: a minute boundary during the test must not run the sweeper behind its back.
    worker = build_worker(settings, redis_url, burst=True, handle_signals=False, poll_delay=0.05,
                          cron_jobs=[])
    try:
        await worker.async_run()
    finally:
        await worker.close()
    return worker
