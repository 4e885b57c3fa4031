"""Admission control: a bounded number of requests run at once in each server process."""

from __future__ import annotations

import asyncio
from typing import Any


class ConcurrencyLimit:
    """At most `limit` HTTP requests of this process run at once; the others wait, in order
    of arrival, before the app sees them (a waiting request holds no database connection)
    (decision 007)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.slots = asyncio.Semaphore(limit)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        async with self.slots:
            await self.app(scope, receive, send)
