"""The Redis channel that tells every server process the event log has news."""

from __future__ import annotations

from redis.exceptions import RedisError

from taskapi.core import stream_metrics
from taskapi.core.redis_client import GuardedRedis, usable

CHANNEL = "taskapi:events"


async def announce(redis: GuardedRedis) -> None:
    """After a commit that recorded events: poke every process's hub (services/live.py).
    Best effort: with Redis away the hubs' periodic read delivers the event a little later."""
    if not await usable(redis):
        return
    try:
        await redis.publish(CHANNEL, b"")
        stream_metrics.EVENTS_PUBLISHED.inc()
    except (RedisError, OSError) as error:
        redis.guard.failed(error)
