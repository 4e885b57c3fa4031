"""AppState: what one app, worker or CLI command holds (settings, database, Redis clients)."""

from __future__ import annotations

from dataclasses import dataclass, field

from taskapi.config import Settings
from taskapi.core import passwords
from taskapi.core.cache import ResponseCache
from taskapi.core.db import Database
from taskapi.core.embedded_redis import EmbeddedRedis
from taskapi.core.ratelimit import RequestGate
from taskapi.core.redis_client import GuardedRedis, connect_redis


@dataclass
class AppState:
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
        settings = self.settings
        passwords.configure(settings.password_concurrency, settings.password_queue,
                            settings.password_queue_wait)

    def connect(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.redis = connect_redis(redis_url)
        self.cache = ResponseCache(self.redis, self.settings.cache_ttl)
        self.gate = RequestGate(self.redis)
