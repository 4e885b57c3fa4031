"""Admission control: a bounded number of requests run at once in each server process."""

from __future__ import annotations

import asyncio
from typing import Any


class ConcurrencyLimit:
    """At most `limit` HTTP requests of this process run at once; the others wait, in order
    of arrival, before the app sees them (a waiting request holds no database connection).

    Without it, at 1,000 connections on two workers (bench/load_1000.py) every request
    entered the app at once and competed for pooled connections and the event loop: on
    PostgreSQL 21 answered 503 (database unavailable) and 1,956 waited past the client's
    10 s timeout; with it, none did, at the same throughput."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.slots = asyncio.Semaphore(limit)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        async with self.slots:
            await self.app(scope, receive, send)
