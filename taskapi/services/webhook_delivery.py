"""Webhook delivery: the event log → one delivery row per (endpoint, event) → a signed POST.

The worker runs `sweep` every WEBHOOK_POLL_INTERVAL (decision 042):
1. Fan-out: for each enabled endpoint, the events after its cursor that it subscribes to
   become delivery rows, and the cursor moves past them, in one transaction. The endpoints
   are locked (FOR UPDATE on PostgreSQL; SQLite's one writer), and (endpoint_id, event_id)
   is unique with ON CONFLICT DO NOTHING, so two workers never record an event twice. Event
   ids increase in commit order (decision 022): a cursor never passes an event that commits
   later. The enqueue is the database row: a Redis outage or a worker crash loses nothing.
2. Delivery: due rows are claimed (pending → sending under a token, attempts + 1, as the
   email outbox does); a claim older than WEBHOOK_CLAIM_TIMEOUT is claimable again. Each
   outcome is written as soon as it is known. A worker stopped mid-send releases what it had
   not finished, the attempt not counted.

A failure is retried on WEBHOOK_RETRY_SCHEDULE (jittered, never sooner than a Retry-After);
after the last retry the delivery is failed. A 410 fails it and disables its endpoint.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskapi.config import Settings
from taskapi.core.db import Database, insert_ignoring
from taskapi.core.shielded import run_to_end
from taskapi.models import DeliveryStatus, TaskEvent, WebhookDelivery, WebhookEndpoint, utcnow
from taskapi.services.webhook_send import Attempt, send

log = logging.getLogger("taskapi.webhooks")
FANOUT_PAGE = 500  # events read per fan-out transaction
# Rows per INSERT: 8 parameters each, well under asyncpg's 32767 per statement (a page for
# nine endpoints would exceed it, and a fan-out failing every sweep stops all webhooks).
INSERT_ROWS = 2000
MAX_RETRY_AFTER = 24 * 3600.0
JITTER = 0.1
Delivery = WebhookDelivery
Endpoint = WebhookEndpoint


def _body(event: Any) -> str:
    stamp = event.created_at.isoformat().replace("+00:00", "Z")
    return json.dumps({"type": event.type, "timestamp": stamp, "data": event.data},
                      separators=(",", ":"), ensure_ascii=False)


def _wants(endpoint: Endpoint, event_type: str) -> bool:
    return "*" in endpoint.events or event_type in endpoint.events


def _rows(endpoints: list[Endpoint], events: Sequence[Any]) -> list[dict[str, Any]]:
    return [{"endpoint_id": endpoint.id, "event_id": event.id, "event_type": event.type,
             "body": _body(event), "status": DeliveryStatus.PENDING, "attempts": 0,
             "next_attempt_at": utcnow(), "created_at": utcnow()}
            for endpoint in endpoints for event in events
            if event.id > endpoint.cursor and _wants(endpoint, event.type)]


async def _insert(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), INSERT_ROWS):
        await session.execute(insert_ignoring(session.get_bind().dialect.name, Delivery,
                                              rows[start:start + INSERT_ROWS],
                                              ["endpoint_id", "event_id"]))


async def catch_up(session: AsyncSession, endpoint: Endpoint) -> None:
    """Fan-out for one endpoint, in the caller's transaction: run before it is disabled, so
    that what was logged while it was enabled is sent even if the workers had not got there."""
    while events := (await session.execute(
            select(TaskEvent.id, TaskEvent.type, TaskEvent.data, TaskEvent.created_at)
            .where(TaskEvent.id > endpoint.cursor).order_by(TaskEvent.id)
            .limit(FANOUT_PAGE))).all():
        await _insert(session, _rows([endpoint], events))
        endpoint.cursor = events[-1].id


def _behind() -> Any:
    head = select(func.max(TaskEvent.id)).scalar_subquery()
    return exists().where(Endpoint.enabled.is_(True), Endpoint.cursor < head)


async def fan_out(db: Database, *, checked: bool = False) -> int:
    """Record the deliveries of every event the enabled endpoints have not seen yet; returns
    how many were recorded. Reads first (unless `checked`), so an idle worker takes no write
    lock."""
    if not checked:
        async with db.session(write=False) as session:
            if not await session.scalar(select(_behind())):
                return 0
    recorded = 0
    while True:
        async with db.transaction(write=True) as session:
            query = select(Endpoint).where(Endpoint.enabled.is_(True)).order_by(Endpoint.id)
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update()
            endpoints = list(await session.scalars(query))
            if not endpoints:
                return recorded
            low = min(endpoint.cursor for endpoint in endpoints)
            events = (await session.execute(
                select(TaskEvent.id, TaskEvent.type, TaskEvent.data, TaskEvent.created_at)
                .where(TaskEvent.id > low).order_by(TaskEvent.id).limit(FANOUT_PAGE))).all()
            if not events:
                return recorded
            rows = _rows(endpoints, events)
            for endpoint in endpoints:
                endpoint.cursor = max(endpoint.cursor, events[-1].id)
            await _insert(session, rows)
            recorded += len(rows)
        if len(events) < FANOUT_PAGE:
            return recorded


def _due(now: datetime, settings: Settings) -> Any:
    lease = now - timedelta(seconds=settings.webhook_claim_timeout)
    enabled = select(Endpoint.id).where(Endpoint.enabled.is_(True))
    return and_(or_(and_(Delivery.status == DeliveryStatus.PENDING,
                         Delivery.next_attempt_at <= now),
                    and_(Delivery.status == DeliveryStatus.SENDING, Delivery.claimed_at < lease)),
                Delivery.endpoint_id.in_(enabled))


async def _claim(db: Database, settings: Settings, limit: int,
                 now: datetime) -> list[tuple[Delivery, Endpoint]]:
    condition = _due(now, settings)
    async with db.session(write=False) as session:  # an idle sweep takes no write lock
        ids = list(await session.scalars(select(Delivery.id).where(condition)
                                         .order_by(Delivery.next_attempt_at, Delivery.id)
                                         .limit(limit)))
    if not ids:
        return []
    token = uuid.uuid4().hex
    async with db.transaction(write=True) as session:
        await session.execute(  # the condition again: another worker may have claimed some
            update(Delivery).where(condition, Delivery.id.in_(ids))
            .values(status=DeliveryStatus.SENDING, claim_token=token, claimed_at=now,
                    attempts=Delivery.attempts + 1)
            .execution_options(synchronize_session=False))
    async with db.session(write=False) as session:
        pairs = (await session.execute(
            select(Delivery, Endpoint).join(Endpoint, Endpoint.id == Delivery.endpoint_id)
            .where(Delivery.claim_token == token).order_by(Delivery.id))).all()
        return [(delivery, endpoint) for delivery, endpoint in pairs]


def retry_delay(settings: Settings, attempts: int, attempt: Attempt) -> float | None:
    """Seconds until the next try after `attempts` failed ones; None when none is left."""
    schedule = settings.webhook_retry_schedule
    if attempts > len(schedule):
        return None
    delay = schedule[attempts - 1] * (1 + random.uniform(0, JITTER))
    if attempt.retry_after is not None:
        delay = max(delay, min(attempt.retry_after, MAX_RETRY_AFTER))
    return delay


def _signing_secrets(endpoint: Endpoint, now: datetime) -> list[str]:
    old, until = endpoint.previous_secret, endpoint.previous_secret_until
    return [endpoint.secret, *([old] if old and until is not None and until > now else [])]


def _retry(settings: Settings, delivery: Delivery, attempt: Attempt,
           now: datetime) -> tuple[str, dict[str, Any]]:
    delay = retry_delay(settings, delivery.attempts, attempt)
    if delay is None:
        return "failed", {"status": DeliveryStatus.FAILED, "next_attempt_at": None}
    return "retry", {"status": DeliveryStatus.PENDING,
                     "next_attempt_at": now + timedelta(seconds=delay)}


async def _record(db: Database, settings: Settings, delivery: Delivery, endpoint: Endpoint,
                  token: str, attempt: Attempt) -> str:
    """Write one attempt's outcome; returns it: delivered, retry, failed or disabled."""
    now = utcnow()
    values: dict[str, Any] = {"claim_token": None, "last_status_code": attempt.status_code,
                              "last_error": attempt.error, "latency_ms": attempt.latency_ms}
    if attempt.ok:
        outcome = "delivered"
        values |= {"status": DeliveryStatus.DELIVERED, "delivered_at": now,
                   "next_attempt_at": None}
    elif attempt.status_code == 410:
        outcome = "disabled"
        values |= {"status": DeliveryStatus.FAILED, "next_attempt_at": None}
    else:
        outcome, more = _retry(settings, delivery, attempt, now)
        values |= more
    async with db.transaction(write=True) as session:
        if outcome == "disabled":  # only the URL that answered: a new one is the admin's fix
            gone = await session.execute(
                update(Endpoint).where(Endpoint.id == endpoint.id, Endpoint.url == endpoint.url)
                .values(enabled=False, updated_at=now, disabled_reason="the receiver answered "
                        f"410 Gone at {now:%Y-%m-%d %H:%M:%SZ}"))
            if not gone.rowcount:  # type: ignore[attr-defined]
                outcome, more = _retry(settings, delivery, attempt, now)
                values |= more
        await session.execute(
            update(Delivery).where(Delivery.id == delivery.id, Delivery.claim_token == token)
            .values(**values).execution_options(synchronize_session=False))
    if outcome != "delivered":
        log.warning("webhook %s event %s (attempt %d): %s%s", endpoint.id, delivery.event_id,
                    delivery.attempts, attempt.error,
                    {"failed": ", giving up", "disabled": ", endpoint disabled"}.get(outcome, ""))
    return outcome


async def _release(db: Database, delivery: Delivery, token: str) -> None:
    """A send cut short (the worker is stopping): pending again now, the attempt uncounted."""
    async with db.transaction(write=True) as session:
        await session.execute(
            update(Delivery).where(Delivery.id == delivery.id, Delivery.claim_token == token,
                                   Delivery.status == DeliveryStatus.SENDING)
            .values(status=DeliveryStatus.PENDING, claim_token=None, next_attempt_at=utcnow(),
                    attempts=Delivery.attempts - 1)
            .execution_options(synchronize_session=False))


async def _deliver_one(db: Database, settings: Settings, client: httpx.AsyncClient,
                       delivery: Delivery, endpoint: Endpoint) -> str:
    token = str(delivery.claim_token)
    try:
        attempt = await send(client, settings, url=endpoint.url, msg_id=str(delivery.event_id),
                             body=delivery.body.encode(),
                             secrets=_signing_secrets(endpoint, utcnow()))
    except asyncio.CancelledError:
        await run_to_end(_release(db, delivery, token), f"releasing webhook delivery {delivery.id}")
        raise
    except Exception as error:  # a bug in one send must not hold the row for the lease
        log.exception("webhook %s event %s: send failed", endpoint.id, delivery.event_id)
        attempt = Attempt(None, f"{type(error).__name__}: {error}"[:500], None)
    return await run_to_end(_record(db, settings, delivery, endpoint, token, attempt),
                        f"recording webhook delivery {delivery.id}")


async def deliver_due(db: Database, settings: Settings,
                      client: httpx.AsyncClient) -> Counter[str]:
    """Send every due delivery, WEBHOOK_CONCURRENCY at a time: a slot that frees claims the
    next one, so no claim waits behind others long enough to outlive its lease. A claim that
    fails (the database away) stops claiming; what is in flight finishes, then it is raised."""
    outcome: Counter[str] = Counter()
    in_flight: set[asyncio.Task[str]] = set()
    failed: Exception | None = None
    try:
        while True:
            free = settings.webhook_concurrency - len(in_flight)
            claimed: list[tuple[Delivery, Endpoint]] = []
            try:
                if free and failed is None:
                    claimed = await _claim(db, settings, free, utcnow())
            except Exception as error:
                failed = error
            in_flight.update(asyncio.create_task(_deliver_one(db, settings, client, *pair))
                             for pair in claimed)
            if not in_flight:
                if failed is not None:
                    raise failed
                return outcome
            done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                outcome[task.result() if task.exception() is None else "error"] += 1
    finally:
        for task in in_flight:
            task.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)


async def sweep(db: Database, settings: Settings, client: httpx.AsyncClient) -> Counter[str]:
    """Fan-out, then delivery; an idle sweep (the usual one) is one Core read of two EXISTS,
    no ORM session (it runs every WEBHOOK_POLL_INTERVAL in every worker)."""
    waiting = select(_behind(), exists().where(_due(utcnow(), settings)))
    behind, due = await db.run(lambda conn: tuple(conn.execute(waiting).one()))
    recorded = await fan_out(db, checked=True) if behind else 0
    outcome = await deliver_due(db, settings, client) if due or recorded else Counter()
    if recorded:
        outcome["recorded"] = recorded
    return outcome
