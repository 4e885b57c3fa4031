"""Rate limits in Redis by GCRA (the generic cell rate algorithm), and the pipelined first
round trip of every request (RequestGate).

A limit of N per P seconds lets N through at once, then one every P/N seconds: there is no
window edge at which 2N fit in a moment (decision 019). Each limit is one key holding its
theoretical arrival time; the clock is Redis's own (TIME), the same for every process. A
refused request takes nothing. Redis down: limits fail open, logged once per outage
(redis_client.py).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from taskapi.core.cache import CacheSpec
from taskapi.core.errors import APIError
from taskapi.core.redis_client import EPOCH_KEY, GuardedRedis, usable
from taskapi.core.redis_pipe import ScriptPipe


@dataclass(frozen=True, slots=True)
class Limit:
    key: str
    limit: int
    period: int  # seconds


def limit(scope: str, ident: str, count: int, period: int) -> Limit:
    return Limit(f"rl:{scope}:{ident}", count, period)


def check(lim: Limit, wait_ms: int) -> None:
    """429 with Retry-After when the limit refused (wait_ms: until it would let one in)."""
    if wait_ms > 0:
        retry = max(1, math.ceil(wait_ms / 1000))
        raise APIError(429, "rate_limited",
                       f"Too many requests: limit is {lim.limit} per {lim.period} s.",
                       headers={"Retry-After": str(retry)}, retry_after=retry)


# gcra_wait(key, limit, period): ms until the key lets one more through (0: now).
# gcra_take(key, limit, period): count one. Theoretical arrival times are in ms.
_GCRA_LUA = """
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
local function gcra_tat(key)
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  return tat
end
local function gcra_wait(key, limit, period)
  local wait = gcra_tat(key) + period * 1000 / limit - period * 1000 - now
  if wait > 0 then return math.ceil(wait) end
  return 0
end
local function gcra_take(key, limit, period)
  local tat = gcra_tat(key) + period * 1000 / limit
  redis.call('SET', key, tat, 'PX', math.ceil(tat - now))
end
"""

# Every limit in KEYS[1..n] (ARGV: limit and period of each), all or none: the longest wait
# and which limit it is when any refuses, else 0 after counting one on each. Then the integer
# at KEYS[n + 1], if given.
_TAKE_LUA = _GCRA_LUA + """
local n = #ARGV / 2
local wait, refusing = 0, 0
for i = 1, n do
  local w = gcra_wait(KEYS[i], tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i]))
  if w > wait then wait, refusing = w, i end
end
if wait == 0 then
  for i = 1, n do gcra_take(KEYS[i], tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])) end
end
local count = 0
if KEYS[n + 1] then count = tonumber(redis.call('GET', KEYS[n + 1]) or '0') end
return {wait, count, refusing}
"""


async def take(redis: GuardedRedis, limits: list[Limit], counter: str | None = None) -> int:
    """Count one request against every limit (one round trip) and enforce them: 429 if any
    refuses. Returns the integer stored at `counter` (0 when unset). Fails open (0)."""
    if not await usable(redis):
        return 0
    keys = [lim.key for lim in limits] + ([counter] if counter else [])
    args = [value for lim in limits for value in (lim.limit, lim.period)]
    try:
        wait, count, refusing = await redis.register_script(_TAKE_LUA)(keys=keys, args=args)
    except (RedisError, OSError) as error:
        redis.guard.failed(error)
        return 0
    if refusing:
        check(limits[int(refusing) - 1], int(wait))
    return int(count)


async def bump(redis: GuardedRedis, counter: str, ttl: int) -> None:
    """Add one to a counter that is forgotten `ttl` seconds after its last change."""
    def queue(pipe: Pipeline) -> None:
        pipe.incr(counter)
        pipe.expire(counter, ttl)

    await _guarded(redis, queue)


async def forget(redis: GuardedRedis, counter: str) -> None:
    await _guarded(redis, lambda pipe: pipe.delete(counter))


async def _guarded(redis: GuardedRedis, queue: Callable[[Pipeline], object]) -> None:
    """Run what `queue` puts on a pipeline; Redis down: skipped (fails open)."""
    if not await usable(redis):
        return
    try:
        async with redis.pipeline(transaction=False) as pipe:
            queue(pipe)
            await pipe.execute()
    except (RedisError, OSError) as error:
        redis.guard.failed(error)


async def queue_take(redis: GuardedRedis, pipe: Pipeline, lim: Limit) -> None:
    """Queue a take of one limit on a pipeline; its reply is [wait_ms, 0, refusing]."""
    await redis.register_script(_TAKE_LUA)(keys=[lim.key], args=[lim.limit, lim.period],
                                           client=pipe)


# The request's one round trip: read the caller's auth state, count the request against the
# right limit, and look up the response the route may serve from cache (its version counters
# and the entry). Auth state and entries live under the current epoch (redis_client.py).
# Which limit: the user's (KEYS[1]) only for a token whose session and user are live in the
# cached state (the rule of services/authstate.actor_from_state); the client address's
# (KEYS[2]) with no token or a token that does not check out; none yet when the state is not
# cached (the caller reads the database, then counts it: http/gate.py).
_REQUEST_LUA = _GCRA_LUA + """
local epoch = redis.call('GET', KEYS[3]) or '0'
local nauth = tonumber(ARGV[3])
local user, session, version, entry = false, false, false, false
local charged = 'ip'
if nauth == 2 then
  user = redis.call('GET', KEYS[4] .. '@' .. epoch)
  session = redis.call('GET', KEYS[5] .. '@' .. epoch)
  if not user or not session then
    charged = ''
  elseif session == 'ok:' .. ARGV[5] and string.sub(user, -2) == ':1' then
    charged = 'user'
  end
end
local wait = 0
if charged ~= '' then
  local key = KEYS[2]
  if charged == 'user' then key = KEYS[1] end
  wait = gcra_wait(key, tonumber(ARGV[1]), tonumber(ARGV[2]))
  if wait == 0 then gcra_take(key, tonumber(ARGV[1]), tonumber(ARGV[2])) end
end
if ARGV[4] ~= '' then
  local parts = {epoch}
  for i = 4 + nauth, #KEYS do parts[#parts + 1] = redis.call('GET', KEYS[i]) or '0' end
  version = table.concat(parts, '.')
  entry = redis.call('GET', ARGV[4] .. '@' .. version)
end
return {wait, charged, epoch, user, session, version, entry}
"""


@dataclass(slots=True)
class TripResult:
    wait_ms: int  # 0: within the limit
    charged: str  # "user", "ip", or "" (auth state not cached: nothing counted yet)
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
        pool = redis.connection_pool
        # Pipelined on a connection of its own (core/redis_pipe.py), else redis-py's pool.
        self._script: Callable[..., Awaitable[Any]] = (
            ScriptPipe(pool, _REQUEST_LUA) if ScriptPipe.supports(pool)
            else redis.register_script(_REQUEST_LUA))

    def close(self) -> None:
        if isinstance(self._script, ScriptPipe):
            self._script.close()

    async def __call__(self, user_limit: Limit | None, ip_limit: Limit,
                       auth: tuple[str, str, int] | None,
                       spec: CacheSpec | None) -> TripResult | None:
        """`auth`: the caller's user and session state keys and user id. None when Redis is
        down (callers fail open: no limit, state from the database)."""
        if not await usable(self.redis):
            return None
        user_key, session_key, user_id = auth or ("", "", 0)
        keys = [user_limit.key if user_limit else ip_limit.key, ip_limit.key, EPOCH_KEY,
                *((user_key, session_key) if auth else ()), *(spec.versions if spec else ())]
        args = [ip_limit.limit, ip_limit.period, 2 if auth else 0, spec.key if spec else "",
                user_id]
        try:
            wait, charged, epoch, user, session, version, entry = await self._script(
                keys=keys, args=args)
        except (RedisError, OSError) as error:
            self.redis.guard.failed(error)
            return None
        return TripResult(int(wait), _text(charged) or "", _text(epoch) or "0", user, session,
                          _text(version) or None, entry)
