"""What one app (or worker, or CLI command) holds: settings, database, Redis. No Quart."""

from __future__ import annotations

from dataclasses import dataclass, field

from redis.asyncio import ConnectionPool

from settings import Settings

from .cache import ResponseCache
from .db import Database
from .embedded_redis import EmbeddedRedis
from .outage import GuardedRedis
from .ratelimit import RequestGate

QUEUE_NAME = "taskapi:queue"


def connect_redis(url: str) -> GuardedRedis:
    """One client for cache, limits, auth state and the job queue. It connects lazily, so a
    Redis that is down at startup does not stop the API from serving from the database."""
    pool = ConnectionPool.from_url(
        url, socket_timeout=1.0, socket_connect_timeout=1.0, health_check_interval=30
    )
    return GuardedRedis(pool, default_queue_name=QUEUE_NAME)


@dataclass
class AppContext:
    settings: Settings
    db: Database
    redis: GuardedRedis = field(init=False)
    redis_url: str = field(init=False, default="")
    embedded: EmbeddedRedis | None = field(init=False, default=None)
    signing_key: str = field(init=False, repr=False)
    cache: ResponseCache = field(init=False)
    gate: RequestGate = field(init=False)

    def __post_init__(self) -> None:
        self.signing_key = self.settings.signing_key()

    def connect(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.redis = connect_redis(redis_url)
        self.cache = ResponseCache(self.redis, self.settings.cache_ttl)
        self.gate = RequestGate(self.redis)
