"""Enqueue background jobs after the request's transaction has committed."""

from __future__ import annotations

import logging
from typing import Any

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from taskapi.core.redis_client import GuardedRedis

log = logging.getLogger("taskapi.queue")


class Unlogged(str):
    """A job argument that logs as `'…'`: arq writes every job's arguments to its log (and so
    does `enqueue` when Redis refuses one). For a value that must not reach a log, an email
    address the caller may not own; it pickles as itself, so the job gets the same text."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'…'"


async def enqueue(redis: ArqRedis, job: str, *args: Any, job_id: str | None = None) -> bool:
    """Queue `job(*args)`; with a job id, a job already queued or done is not queued again.

    Call only after commit, so the worker never runs ahead of the data it needs. Returns
    False when Redis could not take the job (logged).
    """
    if isinstance(redis, GuardedRedis) and redis.guard.down:
        log.error("could not enqueue %s%r (job id %s): Redis is down", job, args, job_id)
        return False
    try:
        await redis.enqueue_job(job, *args, _job_id=job_id)
    except (RedisError, OSError) as error:
        log.error("could not enqueue %s%r (job id %s): %r", job, args, job_id, error)
        if isinstance(redis, GuardedRedis):
            redis.guard.failed(error)
        return False
    return True
