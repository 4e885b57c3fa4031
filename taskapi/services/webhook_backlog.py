"""The webhook deliveries as ops see them: counts by status (`/metrics`, `taskapi jobs list`)
and the latest given up."""

from __future__ import annotations

from sqlalchemy import func, select

from taskapi.core.db import Database
from taskapi.models import DeliveryStatus
from taskapi.models import WebhookDelivery as Delivery


async def backlog(db: Database) -> dict[str, int]:
    """Deliveries per status, leaving out `delivered` (it only grows)."""
    statuses = (DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.FAILED)
    async with db.session(write=False) as session:
        rows = await session.execute(select(Delivery.status, func.count(Delivery.id))
                                     .where(Delivery.status.in_(statuses))
                                     .group_by(Delivery.status))
        counts = {DeliveryStatus(status).value: int(count) for status, count in rows}
    return {status.value: counts.get(status.value, 0) for status in statuses}


async def failures(db: Database, limit: int = 10) -> list[tuple[int, int, str, int, str]]:
    """The latest deliveries given up: (webhook id, event id, type, attempts, last error)."""
    async with db.session(write=False) as session:
        rows = await session.execute(
            select(Delivery.endpoint_id, Delivery.event_id, Delivery.event_type,
                   Delivery.attempts, Delivery.last_error)
            .where(Delivery.status == DeliveryStatus.FAILED)
            .order_by(Delivery.id.desc()).limit(limit))
        return [(hook, event, type_, attempts, error or "")
                for hook, event, type_, attempts, error in rows]
