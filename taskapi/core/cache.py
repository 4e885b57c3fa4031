"""Response cache in Redis with version counters (no KEYS/SCAN/FLUSH).

An entry's key embeds the current values of the version counters it depends on, and the
epoch (redis_client.py); a write bumps the counters after its commit. Redis down: every
lookup misses, stores and bumps are skipped (decision 011).

An entry is fresh for its TTL and kept as long again: past its TTL, at unchanged versions, it
is answered while one build per process replaces it (stale-while-revalidate, decision 038).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from taskapi.core.errors import APIError
from taskapi.core.metrics import count_cache
from taskapi.core.redis_client import EPOCH_KEY, GuardedRedis, usable

log = logging.getLogger("taskapi.cache")
DEFAULT_TTL = 60
# The meta field of a stored entry that says when its TTL ends (Unix seconds).
FRESH_UNTIL = "fresh"

_LOOKUP = """
local parts = {}
for i, key in ipairs(KEYS) do parts[i] = redis.call('GET', key) or '0' end
local version = table.concat(parts, '.')
return {version, redis.call('GET', ARGV[1] .. '@' .. version)}
"""


def tasks_version() -> str:
    return "cv:tasks"


def users_version() -> str:
    return "cv:users"


def mine_version(user_id: int) -> str:
    return f"cv:mine:{user_id}"


def task_version(task_id: int) -> str:
    return f"cv:task:{task_id}"


def digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


@dataclass(frozen=True, slots=True)
class CacheSpec:
    """Where a response lives: its key and the version counters it depends on."""

    key: str
    versions: list[str]
    ttl: int | None = None


@dataclass(slots=True)
class Entry:
    """A serialized response: JSON body, its ETag, and small metadata (total, cursor)."""

    etag: str
    meta: dict[str, str]
    body: str

    @classmethod
    def of(cls, body: str, **meta: str) -> Entry:
        return cls(f'"{digest(body)}"', meta, body)

    @property
    def stale(self) -> bool:
        """Past its TTL (`put` records when that ends): still right at its versions, but due
        for a rebuild."""
        fresh = self.meta.get(FRESH_UNTIL)
        return fresh is not None and float(fresh) <= time.time()


@dataclass(slots=True)
class Lookup:
    key: str
    version: str | None  # None: Redis unavailable, do not store
    entry: Entry | None
    counted: bool = False  # already counted as a hit or miss (http/cached_reads.py)


def _encode(entry: Entry, fresh_until: float) -> str:
    values = {**entry.meta, FRESH_UNTIL: f"{fresh_until:.3f}"}
    meta = "".join(f"{k}:{v}\n" for k, v in values.items())
    return f"{entry.etag}\n{len(values)}\n{meta}{entry.body}"


def _decode(raw: bytes) -> Entry:
    etag, count, rest = raw.decode().split("\n", 2)
    meta: dict[str, str] = {}
    for _ in range(int(count)):
        line, rest = rest.split("\n", 1)
        name, value = line.split(":", 1)
        meta[name] = value
    return Entry(etag, meta, rest)


class ResponseCache:
    def __init__(self, redis: GuardedRedis, ttl: int = DEFAULT_TTL) -> None:
        self.redis = redis
        self.ttl = ttl
        self.enabled = ttl > 0  # TASKAPI_CACHE_TTL=0: every read goes to the database
        self._lookup = redis.register_script(_LOOKUP)
        # Builds in progress in this process, by entry key and versions (see cached()).
        self.flights: dict[str, asyncio.Future[Entry]] = {}

    def refreshing(self, key: str, version: str) -> bool:
        """Whether this process is building the entry `key` at `version` right now."""
        return f"{key}@{version}" in self.flights

    async def get(self, key: str, versions: list[str]) -> Lookup:
        if not self.enabled or not await usable(self.redis):
            return Lookup(key, None, None)
        try:
            version, raw = await self._lookup(keys=[EPOCH_KEY, *versions], args=[key])
        except (RedisError, OSError) as error:
            self.redis.guard.failed(error)
            return Lookup(key, None, None)
        version = version.decode() if isinstance(version, bytes) else str(version)
        return Lookup(key, version, _decode(raw) if raw else None)

    async def put(self, lookup: Lookup, entry: Entry, ttl: int | None = None) -> None:
        """Store under the versions read *before* the database query: if a write bumped
        them meanwhile, this entry is already unreachable and can never serve stale data."""
        if lookup.version is None:
            return
        ttl = min(ttl or self.ttl, self.ttl)
        try:  # kept twice as long as it is fresh: the second half, for a stale answer
            await self.redis.set(f"{lookup.key}@{lookup.version}",
                                 _encode(entry, time.time() + ttl), ex=2 * ttl)
        except (RedisError, OSError) as error:
            self.redis.guard.failed(error)


async def bump(redis: GuardedRedis, *version_keys: str, publish: str | None = None) -> bool:
    """After a commit: invalidate every entry that depends on these versions, and PUBLISH an
    empty message on `publish` (a channel) in the same round trip. With Redis down this is
    skipped (False): the epoch moves on when it is back, invalidating everything."""
    if not (version_keys or publish) or not await usable(redis):
        return False
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for key in dict.fromkeys(version_keys):
                pipe.incr(key)
            if publish is not None:
                pipe.publish(publish, b"")
            await pipe.execute()
    except (RedisError, OSError) as error:
        # Entries built before this write stay reachable until the epoch moves on; the live
        # streams get the event at their hubs' next periodic read.
        if version_keys:
            log.error("cache invalidation failed for %s: %r", ", ".join(version_keys), error)
        else:
            log.warning("live-event poke on %s failed: %r", publish, error)
        redis.guard.failed(error)
        return False
    return True


async def cached(cache: ResponseCache, spec: CacheSpec, build: Callable[[], Awaitable[Entry]],
                 prefetched: Lookup | None = None) -> Entry:
    """The entry for `spec` at the current versions, built (and stored) on a miss.

    `prefetched`: the lookup already made in the request's first Redis round trip.
    """
    lookup = prefetched if prefetched is not None and prefetched.key == spec.key else None
    if lookup is None:
        lookup = await cache.get(spec.key, spec.versions)
    if cache.enabled and not lookup.counted:
        count_cache(spec.key, hit=lookup.entry is not None)
    if lookup.entry is not None:
        if lookup.entry.stale and lookup.version is not None:
            # Its versions still match (they are in its key): answer it, rebuild it once.
            # Why: docs/decisions/038-stale-while-revalidate.md
            _flight(cache, lookup, spec, build)
        return lookup.entry
    if lookup.version is None:  # Redis unavailable or the cache off: nothing to share
        return await build()
    # Shielded: a caller that goes away does not cancel the build the others wait for.
    return await asyncio.shield(_flight(cache, lookup, spec, build))


def _flight(cache: ResponseCache, lookup: Lookup, spec: CacheSpec,
            build: Callable[[], Awaitable[Entry]]) -> asyncio.Future[Entry]:
    """The build of this entry at these versions in this process, started if none is: the
    misses of the same entry at the same versions wait for it; a request that read newer
    versions builds its own. Why: docs/decisions/012-single-build-per-entry.md"""
    flight_key = f"{lookup.key}@{lookup.version}"
    flight = cache.flights.get(flight_key)
    if flight is None:
        flight = asyncio.ensure_future(_build_and_store(cache, lookup, spec, build))
        cache.flights[flight_key] = flight
        flight.add_done_callback(lambda done: _landed(cache, flight_key, done))
    return flight


async def _build_and_store(cache: ResponseCache, lookup: Lookup, spec: CacheSpec,
                           build: Callable[[], Awaitable[Entry]]) -> Entry:
    entry = await build()
    await cache.put(lookup, entry, spec.ttl)
    return entry


def _landed(cache: ResponseCache, flight_key: str, done: asyncio.Future[Entry]) -> None:
    cache.flights.pop(flight_key, None)
    if not done.cancelled():
        # Retrieved: its waiters re-raise it. A rebuild nobody waits for (a stale answer was
        # given) just leaves the old entry in place; an APIError (a task deleted meanwhile,
        # whose versions moved on) is no failure.
        error = done.exception()
        if error is not None and not isinstance(error, APIError):
            log.warning("cache build of %s failed: %r", flight_key.split("@", 1)[0], error)


def decode_entry(raw: bytes | None) -> Entry | None:
    return _decode(raw) if raw else None
