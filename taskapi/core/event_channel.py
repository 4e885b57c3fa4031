"""The Redis channel that tells every server process the event log has news."""

from __future__ import annotations

from taskapi.core import stream_metrics
from taskapi.core.cache import bump
from taskapi.core.redis_client import GuardedRedis

CHANNEL = "taskapi:events"


async def announce(redis: GuardedRedis, *version_keys: str) -> None:
    """After a commit that recorded events: move these cache versions (core/cache.bump) and
    poke every process's hub (services/live.py), in one round trip. Best effort: with Redis
    away the hubs' periodic read delivers the event a little later."""
    if await bump(redis, *version_keys, publish=CHANNEL):
        stream_metrics.EVENTS_PUBLISHED.inc()
