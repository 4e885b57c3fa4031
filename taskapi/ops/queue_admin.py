"""The job queue as ops see it (`taskapi jobs list|run`)."""

from __future__ import annotations

from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import in_progress_key_prefix

from taskapi.config import Settings
from taskapi.core.db import Database


async def describe_queue(redis_url: str, queue_name: str, recent: int = 20) -> list[dict[str, Any]]:
    """Queued and running jobs, then the most recent results."""
    pool = await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=queue_name)
    try:
        rows: list[dict[str, Any]] = []
        for job in await pool.queued_jobs(queue_name=queue_name):
            running = await pool.exists(in_progress_key_prefix + str(job.job_id))
            rows.append({"status": "in_progress" if running else "queued",
                         "job": job.function, "id": job.job_id,
                         "enqueued": f"{job.enqueue_time:%Y-%m-%d %H:%M:%S}"})
        results = sorted(await pool.all_job_results(), key=lambda r: r.finish_time, reverse=True)
        for result in results[:recent]:
            rows.append({"status": "complete" if result.success else "failed",
                         "job": result.function, "id": result.job_id,
                         "finished": f"{result.finish_time:%Y-%m-%d %H:%M:%S}",
                         "result": str(result.result)[:80]})
        return rows
    finally:
        await pool.aclose()


async def run_job_now(job: Any, settings: Settings, redis_url: str, *args: Any) -> Any:
    """Run one job function in this process with the worker's ctx."""
    db = Database.from_url(settings.sqlalchemy_url)
    pool: ArqRedis = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        ctx = {"settings": settings, "db": db, "redis": pool, "job_try": 1, "run_now": True}
        return await job(ctx, *args)
    finally:
        await pool.aclose()
        await db.dispose()
