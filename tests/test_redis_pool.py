"""core/redis_client.py's pool: a connection's readiness check does not hold up the other
commands of the process (redis-py 5.3 held the pool lock across it: redis/redis-py#3692)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.asyncio import ConnectionPool

from taskapi.core.redis_client import connect_redis


async def test_readiness_checks_run_side_by_side(redis_url: str, redis_sync, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    redis = connect_redis(redis_url)
    try:
        await asyncio.gather(*(redis.ping() for _ in range(20)))  # 20 pooled connections
        stock = ConnectionPool.ensure_connection

        async def slow_check(self: Any, connection: Any) -> None:  # a loaded loop, slowed down
            await asyncio.sleep(0.05)
            await stock(self, connection)

        monkeypatch.setattr(ConnectionPool, "ensure_connection", slow_check)
        started = time.monotonic()
        assert await asyncio.gather(*(redis.incr("pool:n") for _ in range(20))) != []
        elapsed = time.monotonic() - started
        # One after the other (the stock pool) is 20 x 0.05 s = 1 s at least.
        assert elapsed < 0.5, f"checkouts serialized: {elapsed:.2f} s"
        assert redis_sync.get("pool:n") == b"20"
    finally:
        await redis.aclose()
