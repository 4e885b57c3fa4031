"""Fixed-window rate limits in Redis. Redis down: limits fail open, logged once per outage
(redis_client.py)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from taskapi.core.cache import CacheSpec
from taskapi.core.errors import APIError
from taskapi.core.redis_client import EPOCH_KEY, GuardedRedis, usable

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


async def hit(redis: GuardedRedis, win: Window) -> None:
    """Count one hit and enforce the limit (a single round trip). Fails open."""
    if not await usable(redis):
        return
    try:
        async with redis.pipeline(transaction=False) as pipe:
            add_hit(pipe, win)
            count, _ = await pipe.execute()
    except (RedisError, OSError) as error:
        redis.guard.failed(error)
        return
    check(win, int(count))


# The request's one round trip: count the hit, read the caller's auth state, and look up the
# response the route may serve from cache (its version counters and the entry). Auth state
# and entries live under the current epoch (redis_client.py).
_REQUEST_LUA = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local epoch = redis.call('GET', KEYS[2]) or '0'
local nauth = tonumber(ARGV[2])
local user, session, version, entry = false, false, false, false
if nauth == 2 then
  user = redis.call('GET', KEYS[3] .. '@' .. epoch)
  session = redis.call('GET', KEYS[4] .. '@' .. epoch)
end
if ARGV[3] ~= '' then
  local parts = {epoch}
  for i = 3 + nauth, #KEYS do parts[#parts + 1] = redis.call('GET', KEYS[i]) or '0' end
  version = table.concat(parts, '.')
  entry = redis.call('GET', ARGV[3] .. '@' .. version)
end
return {count, epoch, user, session, version, entry}
"""


@dataclass(slots=True)
class TripResult:
    count: int
    epoch: str
    user: bytes | None
    session: bytes | None
    version: str | None
    entry: bytes | None


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class RequestGate:
    def __init__(self, redis: GuardedRedis) -> None:
        self.redis = redis
        self._script = redis.register_script(_REQUEST_LUA)

    async def __call__(self, win: Window, auth_keys: tuple[str, str] | None,
                       spec: CacheSpec | None) -> TripResult | None:
        """None when Redis is down (callers fail open: no limit, state from the database)."""
        if not await usable(self.redis):
            return None
        keys = [win.key, EPOCH_KEY, *(auth_keys or ()), *(spec.versions if spec else ())]
        args = [win.period + 1, 2 if auth_keys else 0, spec.key if spec else ""]
        try:
            count, epoch, user, session, version, entry = await self._script(keys=keys,
                                                                             args=args)
        except (RedisError, OSError) as error:
            self.redis.guard.failed(error)
            return None
        return TripResult(int(count), _text(epoch) or "0", user, session,
                         _text(version) or None, entry)
