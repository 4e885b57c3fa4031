"""EVENTS_RETENTION: what the worker prunes from the event log (decision 040), and the
finished webhook deliveries older than it.

The log is also every task's history (decision 021), so rows are kept; what only the live
stream needs, the task snapshot in `data`, is emptied once older than the retention. A
replay that would reach such a row answers `event: reset` instead (services/live.py).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Text, cast, delete, select, update

from taskapi.core.db import Database
from taskapi.models import DeliveryStatus, WebhookDelivery, utcnow
from taskapi.services import events

BATCH = 1000


async def prune_event_payloads(db: Database, retention: int) -> int:
    """Empty `data` of events older than `retention` seconds, in batches; the count."""
    table = events.EVENTS
    cutoff = utcnow() - timedelta(seconds=retention)
    pruned = 0
    while True:
        async with db.transaction() as session:
            ids = list(await session.scalars(
                select(table.c.id)
                .where(table.c.created_at < cutoff, cast(table.c.data, Text) != "{}")
                .order_by(table.c.id).limit(BATCH)))
            if ids:
                await session.execute(update(table).where(table.c.id.in_(ids))
                                      .values(data={}))
        pruned += len(ids)
        if len(ids) < BATCH:
            return pruned


async def prune_deliveries(db: Database, retention: int) -> int:
    """Delete delivered and failed webhook deliveries recorded more than `retention` seconds
    ago, in batches; the count. Pending ones stay whatever their age (they are still due)."""
    cutoff = utcnow() - timedelta(seconds=retention)
    finished = (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED)
    pruned = 0
    while True:
        async with db.transaction() as session:
            ids = list(await session.scalars(
                select(WebhookDelivery.id)
                .where(WebhookDelivery.status.in_(finished), WebhookDelivery.created_at < cutoff)
                .order_by(WebhookDelivery.id).limit(BATCH)))
            if ids:
                await session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(ids)))
        pruned += len(ids)
        if len(ids) < BATCH:
            return pruned
