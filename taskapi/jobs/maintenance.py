"""Database housekeeping."""

from __future__ import annotations

from typing import Any

from taskapi.services.maintenance import optimize_database


async def db_maintenance(ctx: dict[str, Any]) -> str:
    """SQLite: refresh planner statistics and truncate the WAL; PostgreSQL: autovacuum's job."""
    return await optimize_database(ctx["db"])
