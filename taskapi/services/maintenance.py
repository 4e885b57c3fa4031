"""Housekeeping that keeps the database fast over months of running."""

from __future__ import annotations

import logging

from sqlalchemy import text

from taskapi.core.db import Database

log = logging.getLogger("taskapi.maintenance")


async def optimize_database(db: Database) -> str:
    if db.engine.dialect.name != "sqlite":
        return "nothing to do: PostgreSQL's autovacuum keeps statistics fresh"
    async with db.engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
        await conn.exec_driver_sql("PRAGMA optimize")
        # Readers that never pause keep the WAL from being reset; TRUNCATE shrinks it back.
        busy, wal_pages, moved = (await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))).one()
    result = f"optimized; checkpoint busy={busy} wal_pages={wal_pages} moved={moved}"
    log.info("db maintenance: %s", result)
    return result
