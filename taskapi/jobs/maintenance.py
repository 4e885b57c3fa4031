"""Database housekeeping."""

from __future__ import annotations

from typing import Any

from taskapi.services.idempotency import prune
from taskapi.services.maintenance import optimize_database


async def db_maintenance(ctx: dict[str, Any]) -> str:
    """SQLite: refresh planner statistics and truncate the WAL; PostgreSQL: autovacuum's job."""
    return await optimize_database(ctx["db"])


async def prune_idempotency_keys(ctx: dict[str, Any]) -> str:
    """Forget Idempotency-Key answers older than IDEMPOTENCY_TTL."""
    removed = await prune(ctx["db"], ctx["settings"].idempotency_ttl)
    return f"pruned {removed} idempotency keys"
