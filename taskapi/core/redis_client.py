"""The Redis client and its outage guard: fail fast while Redis is away, and forget what
was cached when it returns.

After any Redis failure a process stops calling Redis (requests answer from the database).
Every RETRY_INTERVAL one probe tries again; the probe that succeeds increments the *epoch*,
which every cached response and auth state key embeds, so nothing cached before the outage
is reachable (decision 013).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError

log = logging.getLogger("taskapi.redis")

EPOCH_KEY = "cv:epoch"
RETRY_INTERVAL = 0.5
WHAT_DEGRADES = ("rate limiting fails open, response cache bypassed, "
                 "auth state read from the database")


class RedisGuard:
    """Whether this process may use Redis, and the recovery probe (one per process)."""

    def __init__(self) -> None:
        self.down = False
        self._next_probe = 0.0

    def failed(self, error: BaseException) -> None:
        """Logs the first failure of an outage, not every request."""
        if not self.down:
            log.warning("Redis unavailable: %s: %r", WHAT_DEGRADES, error)
        self.down = True
        self._next_probe = time.monotonic() + RETRY_INTERVAL

    async def available(self, redis: ArqRedis) -> bool:
        """True when Redis may be used: always while up; while down, only once a probe (at
        most one per RETRY_INTERVAL) has moved the epoch on."""
        if not self.down:
            return True
        if time.monotonic() < self._next_probe:
            return False
        self._next_probe = time.monotonic() + RETRY_INTERVAL
        try:
            await redis.incr(EPOCH_KEY)
        except (RedisError, OSError):
            return False
        self.down = False
        log.warning("Redis back: cache epoch moved on, entries from before the outage are "
                    "unreachable; rate limiting and caching restored")
        return True


class GuardedRedis(ArqRedis):
    """The app's Redis client, carrying its process's outage state."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = RedisGuard()


async def usable(redis: GuardedRedis) -> bool:
    return await redis.guard.available(redis)


async def keep_probing(redis: GuardedRedis) -> None:
    """While Redis is down, probe in the background, so the epoch moves on as soon as it is
    back rather than at this process's next request (other processes would not wait)."""
    while True:
        await asyncio.sleep(RETRY_INTERVAL)
        if redis.guard.down:
            await redis.guard.available(redis)


QUEUE_NAME = "taskapi:queue"


class _Pool(ConnectionPool):
    """redis-py 5.3's pool holds its lock across `ensure_connection`, whose readiness probe
    awaits the loop: under load every command of the process queued for the lock, one loop
    turn each (redis/redis-py#3692; the mix's writes waited ~50 ms per command). Here the
    connection is taken under the lock and checked outside it, as redis-py's own
    BlockingConnectionPool does (decision 048)."""

    async def get_connection(self, command_name: Any = None, *keys: Any,
                             **options: Any) -> Any:
        async with self._lock:
            connection = self.get_available_connection()
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection


def connect_redis(url: str) -> GuardedRedis:
    """One client for cache, limits, auth state and the job queue. It connects lazily, so a
    Redis that is down at startup does not stop the API from serving from the database."""
    pool = _Pool.from_url(
        url, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=30
    )
    return GuardedRedis(pool, default_queue_name=QUEUE_NAME)
