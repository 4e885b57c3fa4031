"""Readiness: does each dependency answer within a short timeout?"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from sqlalchemy import text

from taskapi.core.db import Database
from taskapi.schemas.health import CheckResult

log = logging.getLogger("taskapi.health")
CHECK_TIMEOUT = 2.0


async def _database_ok(db: Database) -> bool:
    async with db.session(write=False) as session:
        await session.execute(text("SELECT 1"))
    return True


async def _redis_ok(redis: Redis) -> bool:
    return bool(await redis.ping())


async def check_dependencies(db: Database, redis: Redis) -> dict[str, CheckResult]:
    """{"database": "ok"|"down", "redis": "ok"|"down"}; never raises."""
    results = await asyncio.gather(
        asyncio.wait_for(_database_ok(db), CHECK_TIMEOUT),
        asyncio.wait_for(_redis_ok(redis), CHECK_TIMEOUT),
        return_exceptions=True,
    )
    checks: dict[str, CheckResult] = {}
    for name, result in zip(("database", "redis"), results, strict=True):
        if result is True:
            checks[name] = "ok"
        else:
            checks[name] = "down"
            log.warning("readiness: %s is down: %r", name, result)
    return checks
