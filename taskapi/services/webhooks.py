"""Webhook endpoints (admins only): register, change, rotate the secret, see deliveries.

The secret is returned by create and rotate only. An endpoint receives the events recorded
after it was created (or enabled again): its cursor starts at the log's head. Delivery is
services/webhook_delivery.py, run by the worker (decision 042).
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import TypeAdapter
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.config import Settings
from taskapi.core.errors import APIError, conflict, not_found
from taskapi.core.pagination import Page, decode_cursor, encode_cursor
from taskapi.core.webhook_signing import new_secret
from taskapi.models import (
    DeliveryStatus,
    Role,
    TaskEvent,
    WebhookDelivery,
    WebhookEndpoint,
    utcnow,
)
from taskapi.schemas.common import Id
from taskapi.schemas.webhooks import (
    DeliveryOut,
    DeliveryQuery,
    WebhookIn,
    WebhookOut,
    WebhookSecret,
    WebhookUpdate,
)
from taskapi.services import webhook_delivery
from taskapi.services.authstate import Actor
from taskapi.services.authz import require
from taskapi.services.webhook_urls import Refused, destination

# How long the secret before a rotation keeps signing beside the new one.
ROTATION_OVERLAP = timedelta(hours=24)
_CURSOR = TypeAdapter(tuple[Id])


async def _checked_url(settings: Settings, url: str) -> str:
    try:
        await destination(url, settings.webhook_allow_private)
    except Refused as error:
        raise APIError(422, "webhook_url_refused", f"The webhook URL cannot be used: {error}.",
                       errors=[{"loc": ["url"], "msg": str(error).split(" (")[0][:100],
                                "type": "value_error"}],
                       error_count=1) from None
    return url


async def _head(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.max(TaskEvent.id))) or 0)


async def _endpoint(session: AsyncSession, actor: Actor, webhook_id: int, *,
                    lock: bool = False) -> WebhookEndpoint:
    """`lock`: FOR UPDATE on PostgreSQL (SQLite's write transactions are serial already)."""
    require(actor, Role.ADMIN)
    endpoint = await session.get(WebhookEndpoint, webhook_id, with_for_update=lock or None)
    if endpoint is None:
        raise not_found("webhook")
    return endpoint


async def create(session: AsyncSession, settings: Settings, actor: Actor,
                 data: WebhookIn) -> WebhookSecret:
    require(actor, Role.ADMIN)
    url = await _checked_url(settings, data.url)
    now = utcnow()
    endpoint = WebhookEndpoint(url=url, events=list(data.events), description=data.description,
                               enabled=data.enabled, secret=new_secret(),
                               cursor=await _head(session), created_by=actor.id,
                               created_at=now, updated_at=now)
    session.add(endpoint)
    await session.commit()
    return WebhookSecret.model_validate(endpoint)


async def list_all(session: AsyncSession, actor: Actor) -> list[WebhookOut]:
    require(actor, Role.ADMIN)
    rows = await session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id))
    return [WebhookOut.model_validate(row) for row in rows]


async def get(session: AsyncSession, actor: Actor, webhook_id: int) -> WebhookOut:
    return WebhookOut.model_validate(await _endpoint(session, actor, webhook_id))


async def change(session: AsyncSession, settings: Settings, actor: Actor, webhook_id: int,
                 data: WebhookUpdate) -> WebhookOut:
    endpoint = await _endpoint(session, actor, webhook_id, lock=True)
    fields = data.model_dump(exclude_unset=True)
    if endpoint.enabled and (fields.get("enabled") is False
                             or fields.get("events", endpoint.events) != endpoint.events):
        # What was logged before this change is recorded as subscribed until now (the
        # workers may lag behind): a disable or a new filter applies from now on only.
        await webhook_delivery.catch_up(session, endpoint)
    if "url" in fields and fields["url"] != endpoint.url:
        endpoint.url = await _checked_url(settings, fields["url"])
    if "events" in fields:
        endpoint.events = list(fields["events"])
    if "description" in fields:
        endpoint.description = fields["description"]
    if fields.get("enabled") is True and not endpoint.enabled:
        # From now on: what happened while it was off is not sent (nor is it kept for it).
        endpoint.enabled, endpoint.disabled_reason = True, None
        endpoint.cursor = await _head(session)
    elif fields.get("enabled") is False:
        endpoint.enabled = False
    endpoint.updated_at = utcnow()
    await session.commit()
    return WebhookOut.model_validate(endpoint)


async def delete(session: AsyncSession, actor: Actor, webhook_id: int) -> None:
    """The endpoint and its deliveries (a delivery in flight still ends; nothing retries)."""
    await session.delete(await _endpoint(session, actor, webhook_id))
    await session.commit()


async def rotate(session: AsyncSession, actor: Actor, webhook_id: int) -> WebhookSecret:
    """A new secret; the current one keeps signing too for ROTATION_OVERLAP. A second
    rotation within that time drops the oldest: two secrets sign at most. The row is locked,
    so two rotations at once chain (each answer's secret signs) rather than both replacing
    the same one."""
    endpoint = await _endpoint(session, actor, webhook_id, lock=True)
    now = utcnow()
    endpoint.previous_secret, endpoint.secret = endpoint.secret, new_secret()
    endpoint.previous_secret_until = now + ROTATION_OVERLAP
    endpoint.updated_at = now
    await session.commit()
    return WebhookSecret.model_validate(endpoint)


async def deliveries(session: AsyncSession, actor: Actor, webhook_id: int,
                     query: DeliveryQuery) -> Page[DeliveryOut]:
    """Newest event first; keyset pages on the (endpoint, event) unique index."""
    await _endpoint(session, actor, webhook_id)
    where = [WebhookDelivery.endpoint_id == webhook_id]
    if query.status is not None:
        where.append(WebhookDelivery.status == DeliveryStatus(query.status))
    total = await session.scalar(select(func.count(WebhookDelivery.id)).where(*where)) or 0
    if query.cursor:
        (before,) = decode_cursor(query.cursor, _CURSOR)
        where.append(WebhookDelivery.event_id < before)
    rows = list(await session.scalars(
        select(WebhookDelivery).where(*where).order_by(WebhookDelivery.event_id.desc())
        .limit(query.limit + 1)))
    items = [DeliveryOut.model_validate(row) for row in rows[: query.limit]]
    more = len(rows) > query.limit
    return Page(items, encode_cursor([items[-1].event_id]) if more else None, total)


async def redeliver(session: AsyncSession, actor: Actor, webhook_id: int,
                    delivery_id: int) -> DeliveryOut:
    """Send a delivery now, with a fresh retry schedule: a failed or delivered one again, a
    pending one without waiting for its next attempt; 409 while a worker is sending it."""
    await _endpoint(session, actor, webhook_id)
    delivery = await session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.endpoint_id != webhook_id:
        raise not_found("delivery")
    done = (DeliveryStatus.FAILED, DeliveryStatus.DELIVERED, DeliveryStatus.PENDING)
    result = await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status.in_(done))
        .values(status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=utcnow(),
                claim_token=None, delivered_at=None)
        .execution_options(synchronize_session=False))
    if not result.rowcount:  # type: ignore[attr-defined]
        raise conflict("delivery_in_flight",
                       "A worker is sending this delivery right now: see its outcome first.")
    await session.commit()
    await session.refresh(delivery)
    return DeliveryOut.model_validate(delivery)
