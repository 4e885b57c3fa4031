"""Fixed-window rate limits in Redis. Redis down: limits fail open, logged once per outage."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from .exceptions import APIError

log = logging.getLogger("taskapi.ratelimit")


@dataclass(frozen=True, slots=True)
class Window:
    key: str
    limit: int
    period: int
    reset_at: float


def window(scope: str, ident: str, limit: int, period: int, now: float | None = None) -> Window:
    now = time.time() if now is None else now
    index = int(now // period)
    return Window(f"rl:{scope}:{ident}:{index}", limit, period, (index + 1) * period)


def add_hit(pipe: Pipeline, win: Window) -> None:
    """Queue the two commands of one hit on a pipeline (the caller runs it)."""
    pipe.incr(win.key)
    pipe.expire(win.key, win.period + 1)


def check(win: Window, count: int, now: float | None = None) -> None:
    """429 with Retry-After when the window's count is over its limit."""
    if count > win.limit:
        now = time.time() if now is None else now
        retry = max(1, math.ceil(win.reset_at - now))
        raise APIError(429, "rate_limited",
                       f"Too many requests: limit is {win.limit} per {win.period} s.",
                       headers={"Retry-After": str(retry)}, retry_after=retry)


class Outage:
    """Logs the first failure of an outage and the recovery, not every request."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.down = False

    def failed(self, error: Exception) -> None:
        if not self.down:
            self.down = True
            log.warning("Redis unavailable, %s: %r", self.what, error)

    def ok(self) -> None:
        if self.down:
            self.down = False
            log.warning("Redis back, %s restored", self.what)


LIMITS_OUTAGE = Outage("rate limiting fails open")


async def hit(redis: Redis, win: Window) -> None:
    """Count one hit and enforce the limit (a single round trip)."""
    try:
        async with redis.pipeline(transaction=False) as pipe:
            add_hit(pipe, win)
            count, _ = await pipe.execute()
    except (RedisError, OSError) as error:  # fail open
        LIMITS_OUTAGE.failed(error)
        return
    LIMITS_OUTAGE.ok()
    check(win, int(count))
