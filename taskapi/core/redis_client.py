"""The Redis client and its outage guard: fail fast while Redis is away, and forget what
was cached when it returns.

After any Redis failure a process stops calling Redis: requests answer from the database at
once instead of each waiting for a socket timeout (a paused or unreachable Redis made every
request wait a second per Redis call). Every RETRY_INTERVAL one probe tries again; the probe
that succeeds increments the *epoch*, which every cached response and auth state key embeds.
Writes and revocations made during the outage could not bump their version counters or
overwrite their auth state, and a restarted Redis may load old keys from its dump: with a new
epoch, none of that is reachable, and everything is rebuilt from the database.

The one window: a process that saw no failure may serve an entry of the old epoch until one
that did reaches Redis again (its probe runs every RETRY_INTERVAL in the background).
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


def connect_redis(url: str) -> GuardedRedis:
    """One client for cache, limits, auth state and the job queue. It connects lazily, so a
    Redis that is down at startup does not stop the API from serving from the database."""
    pool = ConnectionPool.from_url(
        url, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=30
    )
    return GuardedRedis(pool, default_queue_name=QUEUE_NAME)
